//! The invalidation subscriber: every instance listens on the revocation
//! channel (on each node of a cluster) and drops what another instance ended.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use redis::cluster_async::ClusterConnection;

use crate::store::{Invalidation, InvalidationSink, StoreId};

use super::{CONNECT_TIMEOUT, PING_AFTER, PING_TIMEOUT};

pub(super) fn parse_id(hex: &str) -> Option<StoreId> {
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(StoreId(out))
}

/// Why a subscription stopped delivering.
pub(super) enum Ended {
    /// Nobody listens any more (the `WxLogin` is gone).
    Unwanted,
    /// The connection closed or stopped answering.
    Lost(String),
}

/// Delivers invalidation messages until nobody listens, subscribing again
/// after any loss (on a cluster, on another node each time).
///
/// While it is down the cache is kept: cached sessions serve within their
/// cache TTL, which bounds how long a revocation can go unheard, and an
/// outage does not turn every cached session into a store lookup that fails
/// with it. Once subscribed again, the cache is dropped, since messages
/// sent meanwhile are lost: a reload is one `GET` per active session,
/// against a Redis that is back.
pub(super) async fn subscribe(
    seeds: Arc<[redis::ConnectionInfo]>,
    cluster: Option<ClusterConnection>,
    channel: String,
    sink: InvalidationSink,
) {
    let mut nodes: Vec<redis::ConnectionInfo> = seeds.to_vec();
    let mut next = 0usize;
    let mut backoff = Duration::from_millis(50);
    // Whether messages may have been missed since the last subscription.
    let mut missed = false;
    loop {
        // Stop once the WxLogin is gone.
        if !sink(Invalidation::Sessions(Vec::new())) {
            return;
        }
        let node = nodes[next % nodes.len()].clone();
        let attempt = async {
            let mut pubsub = redis::Client::open(node)?.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(pubsub)) => {
                backoff = Duration::from_millis(50);
                if missed {
                    tracing::info!(
                        "wxlogin: invalidation subscription restored; dropping the cached sessions (messages may have been missed)"
                    );
                    if !sink(Invalidation::All) {
                        return;
                    }
                } else {
                    tracing::debug!(channel = %channel, "wxlogin: subscribed to invalidations");
                }
                missed = true;
                match listen(pubsub, &sink).await {
                    Ended::Unwanted => return,
                    Ended::Lost(why) => tracing::warn!(
                        reason = %why,
                        "wxlogin: invalidation subscription lost; cached sessions keep serving until it is back"
                    ),
                }
            }
            Ok(Err(e)) => {
                missed = true;
                tracing::warn!(error = %e, "wxlogin: cannot subscribe to invalidations");
            }
            Err(_) => {
                missed = true;
                tracing::warn!("wxlogin: subscribing to invalidations timed out");
            }
        }
        // The next node: its own may be the one that is gone.
        next = next.wrapping_add(1);
        if let Some(c) = &cluster {
            if let Some(found) = cluster_nodes(c, &seeds).await {
                nodes = found;
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// Delivers messages until the connection is lost or nobody listens. After
/// [`PING_AFTER`] of silence it sends a PING: a connection that stays open
/// but no longer answers (a peer gone without a reset, a stalled proxy)
/// would otherwise look like a quiet channel forever.
pub(super) async fn listen(pubsub: redis::aio::PubSub, sink: &InvalidationSink) -> Ended {
    let (mut control, mut messages) = pubsub.split();
    loop {
        match tokio::time::timeout(PING_AFTER, messages.next()).await {
            Ok(Some(msg)) => {
                let Ok(payload) = msg.get_payload::<String>() else {
                    continue;
                };
                let inv = if payload == "*" {
                    Invalidation::All
                } else if let Some(ids) = payload.strip_prefix(super::CHANGED) {
                    Invalidation::Changed(ids.split(',').filter_map(parse_id).collect())
                } else {
                    Invalidation::Sessions(payload.split(',').filter_map(parse_id).collect())
                };
                if !sink(inv) {
                    return Ended::Unwanted;
                }
            }
            Ok(None) => return Ended::Lost("connection closed".to_owned()),
            Err(_) => {
                if !sink(Invalidation::Sessions(Vec::new())) {
                    return Ended::Unwanted;
                }
                match tokio::time::timeout(PING_TIMEOUT, control.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Ended::Lost(format!("PING failed: {e}")),
                    Err(_) => {
                        return Ended::Lost(format!("no answer to PING within {PING_TIMEOUT:?}"))
                    }
                }
            }
        }
    }
}

/// The cluster's nodes, for the subscriber: the seeds first, then every
/// other node `CLUSTER SLOTS` names (reached like the seeds: same
/// credentials and TLS). `None` when the cluster cannot be asked.
pub(super) async fn cluster_nodes(
    conn: &ClusterConnection,
    seeds: &[redis::ConnectionInfo],
) -> Option<Vec<redis::ConnectionInfo>> {
    let mut c = conn.clone();
    let reply: redis::Value = tokio::time::timeout(
        CONNECT_TIMEOUT,
        redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut c),
    )
    .await
    .ok()?
    .ok()?;
    let template = seeds.first()?;
    let mut nodes = seeds.to_vec();
    let mut found: Vec<(String, u16)> = Vec::new();
    if let redis::Value::Array(ranges) = reply {
        for range in ranges {
            let redis::Value::Array(items) = range else {
                continue;
            };
            for node in items.iter().skip(2) {
                let redis::Value::Array(parts) = node else {
                    continue;
                };
                if let (Some(redis::Value::BulkString(host)), Some(redis::Value::Int(port))) =
                    (parts.first(), parts.get(1))
                {
                    let host = String::from_utf8_lossy(host).into_owned();
                    if let (false, Ok(port)) = (host.is_empty(), u16::try_from(*port)) {
                        found.push((host, port));
                    }
                }
            }
        }
    }
    found.sort();
    found.dedup();
    for (host, port) in found {
        let addr = match &template.addr {
            redis::ConnectionAddr::Tcp(..) => redis::ConnectionAddr::Tcp(host, port),
            redis::ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => redis::ConnectionAddr::TcpTls {
                host,
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => continue,
        };
        if nodes.iter().all(|n| n.addr != addr) {
            nodes.push(redis::ConnectionInfo {
                addr,
                redis: template.redis.clone(),
            });
        }
    }
    Some(nodes)
}
