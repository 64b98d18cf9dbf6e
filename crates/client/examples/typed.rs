//! Typed stubs generated from the example plugins' WIT (README.md's "Typed
//! stubs from WIT"): run it against `cargo xtask demo`, from the folder
//! holding `certs/`, with the tour's `WASMRPC_TOKEN` exported.

use std::path::Path;
use wasmrpc_client::protocol::Secret;
use wasmrpc_client::{Client, ClientOptions, ClientTls};

// `Math`, `Stats`, `Inventory`, `stock::Stock`, `stock::Reservation`, ...
wasmrpc_client::bindgen!({ path: "../../guest-examples/math/wit" });
wasmrpc_client::bindgen!({ path: "../../guest-examples/inventory/wit" });

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = ClientOptions {
        tls: Some(ClientTls::from_ca_file(Path::new("certs/ca.crt"))?),
        token: Some(Secret::new(std::env::var("WASMRPC_TOKEN")?)),
        ..ClientOptions::default()
    };
    let client = Client::connect_with("127.0.0.1:7101", options).await?;

    let math = Math::new(&client);
    let sum: i64 = math.add(2, 3).await?;
    let stats: Stats = math.stats(vec![1.0, 2.5, 4.0]).await?;
    // `divide` returns `result<s64, string>`: its own error is the inner `Err`.
    match math.divide(7, 0).await? {
        Ok(quotient) => println!("7 / 0 = {quotient}"),
        Err(why) => println!("7 / 0 failed: {why}"),
    }
    println!("{sum} {stats:?}");

    // `inventory.stock.reserve`, forwarded to the region serving it.
    let stock = Inventory::new(&client).stock();
    match stock.reserve("sku-2", 5).await? {
        Ok(reservation) => println!("reserved {}", reservation.reservation_id),
        Err(stock::StockError::Insufficient(available)) => {
            println!("only {available} available")
        }
        Err(other) => println!("refused: {other:?}"),
    }
    Ok(())
}
