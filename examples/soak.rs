//! A bounded soak run on loopback: `cargo run --release --example soak`
//! (or `scripts/soak.sh`).
//!
//! Starts a demo-like app in this process (memory store, or Redis when
//! `WXLOGIN_REDIS_URL` is set) with the fake WeChat, drives it with
//! concurrent clients for `SOAK_SECONDS` (default 120) with a mix of logins,
//! good, expired, forged and missing tokens, logouts and logged-out tokens,
//! samples resident memory, prints a summary and stops by itself.
//!
//! Exit status: 0 when every response had the expected status and no valid
//! session was lost; 1 otherwise; 2 on a setup error; 3 when the run passed
//! but resident memory grew more than `SOAK_MAX_RSS_GROWTH` percent
//! (default 10) from the end of the warm-up to the end, checked only on
//! runs of at least 60 s.
//!
//! Environment: `SOAK_SECONDS`, `SOAK_WORKERS` (16), `SOAK_POOL` (200
//! long-lived sessions), `SOAK_WARMUP_SECONDS` (half the run, at most 60),
//! `SOAK_MAX_RSS_GROWTH`, `WXLOGIN_REDIS_URL`.

#[path = "soak/driver.rs"]
mod driver;

#[tokio::main]
async fn main() {
    let config = match driver::SoakConfig::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::exit(2);
        }
    };
    let max_growth: f64 = std::env::var("SOAK_MAX_RSS_GROWTH")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(10.0);
    let checks_memory = config.duration.as_secs() >= 60;
    let report = match driver::run(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::exit(2);
        }
    };
    println!("{}", report.summary());
    if !report.passed() {
        std::process::exit(1);
    }
    let growth = report.rss_growth_percent();
    if checks_memory && growth > max_growth {
        println!("soak: resident memory grew {growth:.1}% after warm-up (limit {max_growth}%)");
        std::process::exit(3);
    }
}
