//! The example of README.md's "Calling from Rust" (kept identical by
//! `tests/readme.rs`): run it against `cargo xtask demo`.

use serde::Deserialize;
use std::path::Path;
use std::time::Duration;
use wasmrpc_client::protocol::Secret;
use wasmrpc_client::{CallOptions, Client, ClientOptions};

/// What `math.stats` returns: a WIT record, whose fields are kebab-case.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Stats {
    count: u32,
    mean: f64,
    min: f64,
    max: f64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The hosts and the CA come from regions.toml, eu-west's hosts first;
    // the token is the tour's (`export WASMRPC_TOKEN=...`).
    let options = ClientOptions {
        token: Some(Secret::new(std::env::var("WASMRPC_TOKEN")?)),
        idempotent: vec!["math.*".into()],
        ..ClientOptions::default()
    };
    let regions = Path::new("regions.toml");
    let client = Client::connect_region(regions, Some("eu-west"), options).await?;
    let sum: i64 = client.call("math.add", (2, 3)).await?;
    assert_eq!(sum, 5);
    let stats: Stats = client.call("math.stats", (vec![1.0, 2.5, 4.0],)).await?;
    let options = CallOptions {
        timeout: Some(Duration::from_millis(200)),
        ..CallOptions::default()
    };
    let quotient: i64 = client.call_with("math.divide", (7, 2), options).await?;
    println!(
        "{sum}; {} values from {} to {}, mean {}; {quotient}",
        stats.count, stats.min, stats.max, stats.mean
    );
    Ok(())
}
