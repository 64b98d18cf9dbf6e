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
                        .call_value("math.add", vec![Value::from(a), Value::from(b)])
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

/// 64 callers on one connection, each calling again as soon as it has its
/// answer: replies come back in batches, and the client holds the callers'
/// next requests for one write per batch. No request may be left unsent:
/// every call is answered, exactly, on either kind of runtime.
async fn sixty_four_callers_in_a_closed_loop(host: &HostProcess) {
    let client = host.client().await;
    let lanes: Vec<_> = (0..64i64)
        .map(|lane| {
            let client = client.clone();
            tokio::spawn(async move {
                for i in 0..200i64 {
                    let (a, b) = (lane * 1_000_000, i);
                    let sum = client
                        .call_value("math.add", vec![Value::from(a), Value::from(b)])
                        .await
                        .unwrap();
                    assert_eq!(sum, Value::from(a + b), "lane {lane}, call {i}");
                }
            })
        })
        .collect();
    let all = futures::future::join_all(lanes);
    for lane in tokio::time::timeout(std::time::Duration::from_secs(60), all)
        .await
        .expect("every call answered")
    {
        lane.unwrap();
    }
}

#[tokio::test(flavor = "current_thread")]
async fn closed_loop_callers_on_one_thread_get_every_answer() {
    let host = HostProcess::start(&["math"]);
    sixty_four_callers_in_a_closed_loop(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_callers_on_two_threads_get_every_answer() {
    let host = HostProcess::start(&["math"]);
    sixty_four_callers_in_a_closed_loop(&host).await;
}
