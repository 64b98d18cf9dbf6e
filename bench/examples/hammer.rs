//! Drives a running server: `hammer <addr> <function|floor> <lanes> <calls>`
//! (`BYTES=n` sends one byte string of n bytes instead of two integers).
//! Prints calls/s, the mean time per call of a lane, and the latency
//! percentiles of all calls.
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
                let mut took = Vec::with_capacity(calls / lanes);
                for i in 0..calls / lanes {
                    let start = Instant::now();
                    client.add(i as i64, lane as i64).await.unwrap();
                    took.push(start.elapsed());
                }
                took
            }));
        }
    } else {
        let client = wasmrpc::Client::connect(a[1].as_str()).await?;
        for lane in 0..lanes {
            let client = client.clone();
            let f = a[2].clone();
            tasks.push(tokio::spawn(async move {
                let mut took = Vec::with_capacity(calls / lanes);
                for i in 0..calls / lanes {
                    let start = Instant::now();
                    let args = match std::env::var("BYTES") {
                        Ok(n) => vec![Value::Bytes(vec![7; n.parse().unwrap()])],
                        Err(_) => vec![Value::from(i as i64), Value::from(lane as i64)],
                    };
                    let v = client.call_value(&f, args).await;
                    if let Err(e) = v {
                        eprintln!("lane {lane} call {i}: {e}");
                        break;
                    }
                    took.push(start.elapsed());
                }
                took
            }));
        }
    }
    let mut took = Vec::new();
    for t in tasks {
        took.extend(t.await?);
    }
    let el = t.elapsed();
    took.sort();
    let at = |q: f64| {
        let i = ((took.len() as f64 * q) as usize).min(took.len().saturating_sub(1));
        took.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    println!(
        "{:.0} calls/s, {:.1} µs per call; p50 {:.1} p99 {:.1} p999 {:.1} µs",
        calls as f64 / el.as_secs_f64(),
        el.as_secs_f64() * 1e6 / calls as f64 * lanes as f64,
        at(0.5),
        at(0.99),
        at(0.999),
    );
    Ok(())
}
