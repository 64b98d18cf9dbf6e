//! Many calls multiplexed over one connection.

use ciborium::Value;
use wasmrpc_tests::HostProcess;

#[tokio::test]
async fn a_thousand_concurrent_calls_from_fifty_tasks_share_one_connection() {
    let host = HostProcess::start(&["math"]);
    let client = host.client().await;
    let mut tasks = Vec::new();
    for task in 0..50i64 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let calls = (0..20i64).map(|i| {
                let client = client.clone();
                async move {
                    let (a, b) = (task * 1000, i);
                    let sum = client
                        .call("math.add", vec![Value::from(a), Value::from(b)])
                        .await;
                    (a + b, sum)
                }
            });
            futures::future::join_all(calls).await
        }));
    }
    let mut checked = 0;
    for task in tasks {
        for (expected, sum) in task.await.unwrap() {
            assert_eq!(sum.unwrap(), Value::from(expected));
            checked += 1;
        }
    }
    assert_eq!(checked, 1000);
}
