//! The example of README.md's "Calling from Rust" (kept identical by
//! `tests/readme.rs`): run it against `cargo xtask demo`.

use std::path::Path;
use std::time::Duration;
use wasmrpc_client::protocol::Secret;
use wasmrpc_client::{CallOptions, Client, ClientOptions, ClientTls};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The demo's CA and the token of the tour (`export WASMRPC_TOKEN=...`).
    let options = ClientOptions {
        tls: Some(ClientTls::from_ca_file(Path::new("certs/ca.crt"))?),
        token: Some(Secret::new(std::env::var("WASMRPC_TOKEN")?)),
        ..ClientOptions::default()
    };
    let client = Client::connect_with("127.0.0.1:7101", options).await?;
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
