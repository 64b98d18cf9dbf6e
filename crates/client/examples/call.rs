//! The example of README.md's "Calling from Rust" (kept identical by
//! `tests/readme.rs`): run it against `cargo xtask demo`.

use std::time::Duration;
use wasmrpc_client::{CallOptions, Client};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::connect("127.0.0.1:7101").await?;
    let sum = client.call("math.add", vec![2.into(), 3.into()]).await?;
    assert_eq!(sum, 5.into());
    let options = CallOptions {
        timeout: Some(Duration::from_millis(200)),
        ..CallOptions::default()
    };
    let quotient = client
        .call_with("math.divide", vec![7.into(), 2.into()], options)
        .await?;
    println!("{sum:?} {quotient:?}");
    Ok(())
}
