//! The layer over real HTTP with sessions in a three-master Redis Cluster
//! built on loopback by the harness (the store suite covers the store
//! itself on the cluster): login, `/api/me` on either instance, and a logout
//! on one instance refused by the other within a second.

mod common;
#[path = "common/redis.rs"]
mod redis_harness;

use std::time::Duration;

use common::{builder, fake_wechat, get_json, login};
use redis_harness::{
    index_members, logout, unique_prefix, wait_for_status, wait_numsub, Instance, RedisCli,
    RedisCluster, TOKEN_KEY,
};
use wxlogin::store::RedisStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_me_and_logout_across_instances_on_a_cluster() {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    let urls = cluster.urls();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let fake = fake_wechat().await;
    let prefix = unique_prefix("cluster");
    let mut instances = Vec::new();
    for _ in 0..2 {
        let store = RedisStore::connect_cluster(&urls)
            .await
            .expect("connect to the cluster")
            .with_prefix(&prefix);
        let wx = builder(&fake)
            .token_key(TOKEN_KEY)
            .store(store)
            .cache_ttl(Duration::from_secs(60))
            .build()
            .unwrap();
        instances.push(Instance::serve(wx).await);
    }
    let (a, b) = (&instances[0], &instances[1]);
    let channel = format!("{prefix}:revoked");
    wait_numsub(&cluster, &channel, 2, Duration::from_secs(5)).await;
    let client = reqwest::Client::new();

    // Several users, so their keys land in different slots and nodes (all
    // twelve random session keys on one of three masters: odds of 3 in 3^12).
    const USERS: usize = 12;
    let mut tokens = Vec::new();
    for i in 0..USERS {
        let openid = format!("o-cluster-{i}");
        let token = login(&client, &a.base, &fake, &openid).await;
        for inst in [a, b] {
            let (status, body) = get_json(&client, &inst.me(), Some(&token)).await;
            assert_eq!(
                (status, body["openid"].as_str()),
                (200, Some(openid.as_str()))
            );
        }
        tokens.push(token);
    }
    let probe = RedisStore::connect_cluster(&urls)
        .await
        .unwrap()
        .with_prefix(&prefix);
    let nodes_used = (0..USERS)
        .filter_map(|i| {
            let members = index_members(&cluster, &probe.user_key(&format!("o-cluster-{i}")));
            assert_eq!(members.len(), 1, "one session in the user's index");
            let key = probe.session_key(redis_harness::parse_store_id(&members[0]));
            cluster
                .nodes()
                .iter()
                .position(|n| n.cli(&["KEYS", &key]) == key)
        })
        .collect::<std::collections::HashSet<_>>();
    assert!(
        nodes_used.len() >= 2,
        "sessions spread over the masters: {nodes_used:?}"
    );

    assert_eq!(logout(&client, &a.base, &tokens[0]).await, 204);
    let (elapsed, body) =
        wait_for_status(&client, &b.me(), &tokens[0], 401, Duration::from_secs(3)).await;
    assert!(
        elapsed < Duration::from_secs(1),
        "refused only after {elapsed:?}"
    );
    assert_eq!(body["error"], "invalid_token");
    assert_eq!(get_json(&client, &b.me(), Some(&tokens[1])).await.0, 200);

    assert_eq!(b.wx.revoke_user("o-cluster-1").await.unwrap(), 1);
    let (elapsed, _) =
        wait_for_status(&client, &a.me(), &tokens[1], 401, Duration::from_secs(3)).await;
    assert!(
        elapsed < Duration::from_secs(1),
        "refused only after {elapsed:?}"
    );
}

/// The node the invalidation subscriber is on dies: the subscriber moves to
/// another node (the cluster forwards every `PUBLISH` to all nodes), and a
/// logout announced there reaches the instance within a second, with a
/// 60 s cache. The cluster runs with `cluster-require-full-coverage no`, so
/// the two surviving masters keep serving their slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriber_moves_when_its_node_dies() {
    let mut cluster = tokio::task::spawn_blocking(|| {
        RedisCluster::start_with(&["--cluster-require-full-coverage", "no"])
    })
    .await
    .unwrap();
    let urls = cluster.urls();
    let url_refs: Vec<&str> = urls.iter().map(String::as_str).collect();
    let fake = fake_wechat().await;
    let prefix = unique_prefix("move");
    let channel = format!("{prefix}:revoked");
    let store = RedisStore::connect_cluster(&url_refs)
        .await
        .expect("connect to the cluster")
        .with_prefix(&prefix);
    let probe = store.clone();
    let a = Instance::serve(
        builder(&fake)
            .token_key(TOKEN_KEY)
            .store(store)
            .cache_ttl(Duration::from_secs(60))
            .build()
            .unwrap(),
    )
    .await;
    let client = reqwest::Client::new();
    let mut tokens = Vec::new();
    for i in 0..12 {
        tokens.push(login(&client, &a.base, &fake, &format!("o-move-{i}")).await);
    }
    // Where the subscriber is now.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let on = loop {
        let on: Vec<usize> = (0..3)
            .filter(|&n| cluster.nodes()[n].numsub(&channel) > 0)
            .collect();
        if !on.is_empty() {
            break on[0];
        }
        assert!(std::time::Instant::now() < deadline, "never subscribed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Which session key lives on which node.
    let node_of = |key: &str, nodes: &[usize]| {
        nodes
            .iter()
            .copied()
            .find(|&n| cluster.nodes()[n].cli(&["EXISTS", key]) == "1")
    };
    let survivors: Vec<usize> = (0..3).filter(|&n| n != on).collect();
    let mut on_survivor = None;
    for i in 0..12 {
        let members = index_members(&cluster, &probe.user_key(&format!("o-move-{i}")));
        let key = probe.session_key(redis_harness::parse_store_id(&members[0]));
        if let Some(n) = node_of(&key, &survivors) {
            on_survivor = Some((i, key, n, members[0].clone()));
            break;
        }
    }
    let (i, key, node, store_id) = on_survivor.expect("some session on a surviving node");

    cluster.kill_node(on);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if survivors
            .iter()
            .any(|&n| cluster.nodes()[n].numsub(&channel) > 0)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the subscriber never moved off the dead node"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Cached again (a subscription restored drops the cache), from a live node.
    let (_, body) =
        wait_for_status(&client, &a.me(), &tokens[i], 200, Duration::from_secs(10)).await;
    assert_eq!(body["openid"], format!("o-move-{i}"));
    // A logout as another instance makes it: delete, then announce.
    assert_eq!(cluster.nodes()[node].cli(&["DEL", &key]), "1");
    let other = survivors
        .iter()
        .copied()
        .find(|&n| n != node)
        .unwrap_or(node);
    cluster.nodes()[other].cli(&["PUBLISH", &channel, &store_id]);
    let (elapsed, body) =
        wait_for_status(&client, &a.me(), &tokens[i], 401, Duration::from_secs(3)).await;
    assert!(
        elapsed < Duration::from_secs(1),
        "refused only after {elapsed:?}"
    );
    assert_eq!(body["error"], "invalid_token");
}
