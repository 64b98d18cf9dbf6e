//! Drives a running server: `hammer <addr> <function|floor> <lanes> <calls>`
//! (`BYTES=n` sends one byte string of n bytes instead of two integers).
use ciborium::Value;
use std::time::Instant;
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let lanes: usize = a[3].parse()?;
    let calls: usize = a[4].parse()?;
    let t = Instant::now();
    let mut tasks = Vec::new();
    if a[2] == "floor" {
        let client = wasmrpc_bench::floor::Client::connect(a[1].parse()?).await?;
        for lane in 0..lanes {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..calls / lanes {
                    client.add(i as i64, lane as i64).await.unwrap();
                }
            }));
        }
    } else {
        let client = wasmrpc::Client::connect(a[1].as_str()).await?;
        for lane in 0..lanes {
            let client = client.clone();
            let f = a[2].clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..calls / lanes {
                    let args = match std::env::var("BYTES") {
                        Ok(n) => vec![Value::Bytes(vec![7; n.parse().unwrap()])],
                        Err(_) => vec![Value::from(i as i64), Value::from(lane as i64)],
                    };
                    let v = client.call(&f, args).await;
                    if let Err(e) = v {
                        eprintln!("lane {lane} call {i}: {e}");
                        return;
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await?;
    }
    let el = t.elapsed();
    println!(
        "{:.0} calls/s, {:.1} µs per call",
        calls as f64 / el.as_secs_f64(),
        el.as_secs_f64() * 1e6 / calls as f64 * lanes as f64
    );
    Ok(())
}
