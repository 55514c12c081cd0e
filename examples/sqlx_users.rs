//! The login hook registers users in a SQL database through sqlx, on SQLite
//! or PostgreSQL: `cargo run --example sqlx_users`.
//!
//! The first login of an openid inserts a row in `users`; later logins find
//! it and count the login. The row id is the session's app data, so every
//! handler behind the layer knows the user's id without a query. If the
//! database fails during login, the hook answers [`LoginError::unavailable`]
//! and the client gets `503 store_unavailable`, never a half-made session.
//!
//! The example uses sqlx's `Any` driver, so one binary serves both backends:
//! `DATABASE_URL` picks it. The SQL is portable (`$1` placeholders,
//! `INSERT ... ON CONFLICT (openid) DO UPDATE ... RETURNING id`, timestamps
//! as BIGINT unix seconds); only the `CREATE TABLE` differs per backend.
//!
//! Environment (all optional): `DATABASE_URL` (default `sqlite::memory:`;
//! a file such as `sqlite:users.db` keeps users across restarts and is
//! created when missing; `postgres://user@host:5432/db` uses PostgreSQL, and
//! `?options=-c%20search_path%3Dmyschema` puts the table in a schema),
//! `WXLOGIN_BIND` (default `127.0.0.1:3002`), `WXLOGIN_TOKEN_KEY`,
//! `WXLOGIN_SESSION_TTL` (seconds). It runs against the crate's fake WeChat.
//!
//! Routes: `POST /wx/login`, `POST /wx/logout`, `GET /api/me` (JSON with
//! `user_id`, `openid`, `unionid`, `login_count`, `created_at`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use wxlogin::mock::FakeWeChat;
use wxlogin::{Identity, LoginError, WxLogin, WxUser};

const APP_ID: &str = "wxdemo0000000000";
const APP_SECRET: &str = "demo-secret";

/// The session's app data: the user's row id in `users`.
type UserId = i64;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn fail(msg: &str) -> ! {
    eprintln!("sqlx_users example: {msg}");
    std::process::exit(2)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The `users` table for SQLite: `INTEGER PRIMARY KEY` is the rowid.
const SQLITE_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS users (
    id          INTEGER PRIMARY KEY,
    openid      TEXT NOT NULL UNIQUE,
    unionid     TEXT,
    created_at  BIGINT NOT NULL,
    login_count BIGINT NOT NULL DEFAULT 0
)";

/// The `users` table for PostgreSQL: every integer is BIGINT, so each column
/// decodes as `i64` through the `Any` driver on both backends.
const POSTGRES_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS users (
    id          BIGSERIAL PRIMARY KEY,
    openid      TEXT NOT NULL UNIQUE,
    unionid     TEXT,
    created_at  BIGINT NOT NULL,
    login_count BIGINT NOT NULL DEFAULT 0
)";

/// Opens the database (SQLite or PostgreSQL, by URL scheme) and makes sure
/// the table exists.
async fn open_db(url: &str) -> Result<AnyPool, sqlx::Error> {
    sqlx::any::install_default_drivers();
    let sqlite = url.starts_with("sqlite:");
    let postgres = url.starts_with("postgres:") || url.starts_with("postgresql:");
    if !sqlite && !postgres {
        return Err(sqlx::Error::Configuration(
            format!("DATABASE_URL must start with sqlite: or postgres://, not {url:?}").into(),
        ));
    }
    let in_memory = sqlite && (url.contains(":memory:") || url.contains("mode=memory"));
    let pool = if in_memory {
        // Every connection to `:memory:` is its own empty database: keep
        // exactly one, forever.
        AnyPoolOptions::new()
            .min_connections(1)
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect(url)
            .await?
    } else if sqlite && !url.contains("mode=") {
        // Create the file when it is missing (sqlx's `mode=rwc`).
        let sep = if url.contains('?') { '&' } else { '?' };
        AnyPoolOptions::new()
            .max_connections(8)
            .connect(&format!("{url}{sep}mode=rwc"))
            .await?
    } else {
        AnyPoolOptions::new()
            .max_connections(8)
            .connect(url)
            .await?
    };
    let schema = if sqlite {
        SQLITE_SCHEMA
    } else {
        POSTGRES_SCHEMA
    };
    sqlx::query(schema).execute(&pool).await?;
    Ok(pool)
}

/// Finds the user by openid or registers them, counting the login; one
/// statement, so two first logins at once still make one row. The same SQL
/// runs on SQLite (3.35 or newer) and PostgreSQL.
async fn find_or_create(db: &AnyPool, who: &Identity) -> Result<UserId, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO users (openid, unionid, created_at, login_count) VALUES ($1, $2, $3, 1)
         ON CONFLICT (openid) DO UPDATE SET
             login_count = users.login_count + 1,
             unionid = COALESCE(excluded.unionid, users.unionid)
         RETURNING id",
    )
    .bind(&who.openid)
    .bind(&who.unionid)
    .bind(unix_now())
    .fetch_one(db)
    .await
}

#[tokio::main]
async fn main() {
    // Logs go to stderr; stdout carries only the two address lines.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let db_url = env("DATABASE_URL").unwrap_or_else(|| "sqlite::memory:".into());
    let db = open_db(&db_url)
        .await
        .unwrap_or_else(|e| fail(&format!("cannot open {}: {e}", redact(&db_url))));
    tracing::info!(database = %redact(&db_url), "sqlx_users example: database ready");

    let fake = FakeWeChat::start(APP_ID, APP_SECRET)
        .await
        .unwrap_or_else(|e| fail(&format!("cannot start the fake WeChat: {e}")));
    println!("fake wechat on {}", fake.base_url());

    let mut builder = WxLogin::builder()
        .app_id(APP_ID)
        .app_secret(APP_SECRET)
        .api_base(fake.base_url());
    if let Some(key) = env("WXLOGIN_TOKEN_KEY") {
        builder = builder.token_key(key);
    }
    if let Some(ttl) = env("WXLOGIN_SESSION_TTL") {
        let secs: u64 = ttl
            .parse()
            .unwrap_or_else(|_| fail("WXLOGIN_SESSION_TTL must be a number of seconds"));
        builder = builder.session_ttl(Duration::from_secs(secs));
    }
    let hook_db = db.clone();
    let wx = builder
        .on_login(move |who: Identity| {
            let db = hook_db.clone();
            async move {
                find_or_create(&db, &who)
                    .await
                    .map_err(LoginError::unavailable)
            }
        })
        .build()
        .unwrap_or_else(|e| fail(&e.to_string()));

    let app = Router::new()
        .route("/api/me", get(me))
        .layer(wx.layer())
        .route_service("/wx/login", wx.login_service())
        .route_service("/wx/logout", wx.logout_service())
        .with_state(db);

    let bind = env("WXLOGIN_BIND").unwrap_or_else(|| "127.0.0.1:3002".into());
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .unwrap_or_else(|e| fail(&format!("cannot listen on {bind}: {e}")));
    let addr = listener.local_addr().expect("bound address");
    println!("listening on http://{addr}");
    // With each connection's peer address, the key of the per-client login limits.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .unwrap_or_else(|e| fail(&format!("server error: {e}")));
    drop(fake);
}

/// `GET /api/me`: the row id comes from the session; the rest from the database.
async fn me(State(db): State<AnyPool>, user: WxUser<UserId>) -> Response {
    let user_id = *user.data();
    let row: Result<Option<(i64, i64)>, _> =
        sqlx::query_as("SELECT login_count, created_at FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&db)
            .await;
    match row {
        Ok(Some((login_count, created_at))) => Json(serde_json::json!({
            "user_id": user_id,
            "openid": user.openid(),
            "unionid": user.unionid(),
            "login_count": login_count,
            "created_at": created_at,
        }))
        .into_response(),
        // The row was deleted while the session lived: the account is gone.
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": "user_not_found", "message": "this account no longer exists"})),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "sqlx_users example: user lookup failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({"error": "database_unavailable", "message": "try again shortly"})),
            )
                .into_response()
        }
    }
}

/// The database URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
