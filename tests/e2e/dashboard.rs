//! The admin listener's dashboard (`/`) in headless Chromium: one page kept
//! open on a host of three regions shaped like the sample, read through its
//! live DOM while calls flow and hosts die.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ciborium::Value;
use serde_json::Value as Json;
use wasmrpc::{Client, ErrorCode};
use wasmrpc_tests::{
    Browser, Cluster, HostProcess, RegionSpec, chromium, eventually, eventually_async,
};

/// Pings 200 ms apart, a peer dead after 3 missed: a dead host shows
/// within a second even when its connections stay open.
const PING: &[&str] = &["--ping-interval", "200ms", "--missed-pings", "3"];

/// `orders.place` calls made before the page opens: its row's total.
const ORDERS: usize = 3;

/// What the page shows, read from its DOM: the graph's host nodes and
/// links (with the colour the node's box is drawn in), and the function rows.
const SNAPSHOT: &str = r##"(() => ({
  state: document.body?.dataset.state,
  updated: document.getElementById("updated")?.textContent,
  hosts: [...document.querySelectorAll("#graph [data-host]")].map((n) => ({
    host: n.dataset.host, region: n.dataset.region, health: n.dataset.health,
    self: n.hasAttribute("data-self"),
    stroke: getComputedStyle(n.querySelector("rect")).stroke,
  })),
  links: [...document.querySelectorAll("#graph [data-link]")].map((l) => ({
    host: l.dataset.link, health: l.dataset.health, label: l.querySelector(".rtt").textContent,
  })),
  rows: [...document.querySelectorAll("#rows tr")].map((r) => ({
    function: r.dataset.function, placement: r.dataset.placement,
    rate: r.querySelector("[data-col=rate]").textContent,
    errors: r.querySelector("[data-col=errors]").textContent,
    p50: r.querySelector("[data-col=p50]").textContent,
    p99: r.querySelector("[data-col=p99]").textContent,
    total: r.querySelector("[data-col=total]").textContent,
  })),
}))()"##;

/// The colour of a host that is down (`--down`), as computed styles give it.
const RED: &str = "rgb(207, 34, 46)";

fn sample() -> Cluster {
    Cluster::new(
        &[
            RegionSpec {
                name: "eu-west",
                hosts: 1,
                plugins: &["math", "greeter"],
            },
            RegionSpec {
                name: "us-east",
                hosts: 2,
                plugins: &["orders", "math"],
            },
            RegionSpec {
                name: "ap-south",
                hosts: 1,
                plugins: &["inventory"],
            },
        ],
        &[],
        &[],
    )
}

fn host<'a>(page: &'a Json, address: &str) -> Option<&'a Json> {
    page["hosts"]
        .as_array()?
        .iter()
        .find(|h| h["host"] == address)
}

fn link<'a>(page: &'a Json, address: &str) -> Option<&'a Json> {
    page["links"]
        .as_array()?
        .iter()
        .find(|l| l["host"] == address)
}

fn row<'a>(page: &'a Json, function: &str, placement: &str) -> Option<&'a Json> {
    page["rows"]
        .as_array()?
        .iter()
        .find(|r| r["function"] == function && r["placement"] == placement)
}

/// A round-trip time as the page writes it on a link: `0.31 ms`.
fn is_rtt(label: &str) -> bool {
    label
        .strip_suffix(" ms")
        .and_then(|n| n.parse::<f64>().ok())
        .is_some_and(|ms| ms >= 0.0)
}

/// A latency as the page writes it: `150 µs`, `4.8 ms`, `1.2 s`.
fn is_latency(text: &str) -> bool {
    let number = text
        .strip_suffix(" µs")
        .or_else(|| text.strip_suffix(" ms"))
        .or_else(|| text.strip_suffix(" s"));
    number
        .and_then(|n| n.parse::<f64>().ok())
        .is_some_and(|n| n > 0.0)
}

/// Waits up to `timeout` for the page to satisfy `check`; returns the last
/// snapshot either way.
fn wait_for_page(
    page: &mut Browser,
    timeout: Duration,
    check: impl Fn(&Json) -> bool,
) -> (bool, Json) {
    let mut last = Json::Null;
    let held = eventually(timeout, || {
        last = page.eval(SNAPSHOT);
        check(&last)
    });
    (held, last)
}

/// Calls `math.add` (answered) and `math.divide` by zero (refused) on
/// `client` until `stop`: steady traffic for the rates. Returns the
/// outcomes that were not the expected ones.
async fn traffic(client: Client, stop: Arc<AtomicBool>) -> Vec<String> {
    let mut unexpected = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match client
            .call_value("math.add", vec![Value::from(2), Value::from(3)])
            .await
        {
            Ok(sum) if sum == Value::from(5) => {}
            other => unexpected.push(format!("math.add: {other:?}")),
        }
        match client
            .call_value("math.divide", vec![Value::from(1), Value::from(0)])
            .await
        {
            Err(error) if error.code == ErrorCode::HandlerError => {}
            other => unexpected.push(format!("math.divide: {other:?}")),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    unexpected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_draws_every_host_live_and_turns_a_killed_one_red() {
    // No Chromium fails the test here, saying how to install it.
    chromium();
    let cluster = sample();
    let hosts: Vec<HostProcess> = [
        ("eu-west", 0),
        ("us-east", 0),
        ("us-east", 1),
        ("ap-south", 0),
    ]
    .into_iter()
    .map(|(region, index)| cluster.host(region, index).admin().args(PING).start())
    .collect();
    for host in &hosts {
        host.wait_until_linked(hosts.len() - 1, Duration::from_secs(10));
    }
    let eu = &hosts[0];
    let (eu_addr, us_1, us_2, ap) = (
        cluster.listed("eu-west", 0).to_string(),
        cluster.listed("us-east", 0).to_string(),
        cluster.listed("us-east", 1).to_string(),
        cluster.listed("ap-south", 0).to_string(),
    );

    let client = eu.client().await;
    let listed = eventually_async(Duration::from_secs(10), || async {
        client
            .list()
            .await
            .is_ok_and(|catalog| catalog.iter().any(|f| f.name == "orders.place"))
    })
    .await;
    assert!(listed, "`orders.place` never listed at eu-west");
    for i in 0..ORDERS {
        let order = client
            .call_value(
                "orders.place",
                vec![
                    Value::Text(format!("c{i}")),
                    Value::Text("sku-1".into()),
                    Value::from(1),
                ],
            )
            .await
            .unwrap();
        assert!(matches!(order, Value::Map(_)), "{order:?}");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(traffic(eu.client().await, stop.clone()));

    let url = format!("http://{}/", eu.admin.expect("an admin listener"));
    let mut page = Browser::open(&url);

    // Every host, each in its region, up, with its RTT on its link; the
    // calls of this host per function.
    let peers = [(&us_1, "us-east"), (&us_2, "us-east"), (&ap, "ap-south")];
    let (drawn, shown) = wait_for_page(&mut page, Duration::from_secs(15), |p| {
        p["state"] == "live"
            && host(p, &eu_addr).is_some_and(|h| {
                h["self"] == true && h["region"] == "eu-west" && h["health"] == "up"
            })
            && peers.iter().all(|(addr, region)| {
                host(p, addr).is_some_and(|h| {
                    h["region"] == *region && h["health"] == "up" && h["self"] == false
                }) && link(p, addr)
                    .is_some_and(|l| l["health"] == "up" && l["label"].as_str().is_some_and(is_rtt))
            })
            && p["hosts"].as_array().map(Vec::len) == Some(4)
            && row(p, "orders.place", "forwarded")
                .is_some_and(|r| r["total"] == ORDERS.to_string().as_str())
            && row(p, "math.add", "local").is_some_and(|r| {
                r["rate"].as_str().and_then(|v| v.parse::<f64>().ok()) > Some(0.0)
                    && r["errors"] == "0%"
                    && r["p50"].as_str().is_some_and(is_latency)
                    && r["p99"].as_str().is_some_and(is_latency)
            })
            && row(p, "math.divide", "local").is_some_and(|r| r["errors"] == "100%")
    });
    assert!(
        drawn,
        "the page never showed every host up with its RTT and the calls; it shows:\n{shown:#}\n\
         Chromium's log:\n{}",
        page.log()
    );

    // kill -9 the one host of ap-south: the page, still open, turns it red.
    hosts[3].signal(libc::SIGKILL);
    let killed = Instant::now();
    let (red, shown) = wait_for_page(&mut page, Duration::from_secs(5), |p| {
        host(p, &ap).is_some_and(|h| h["health"] == "down" && h["stroke"] == RED)
            && link(p, &ap).is_some_and(|l| l["health"] == "down")
    });
    assert!(
        red,
        "the killed host never turned red within 5 s; the page shows:\n{shown:#}"
    );
    eprintln!("the killed host turned red after {:?}", killed.elapsed());
    for addr in [&us_1, &us_2] {
        assert_eq!(host(&shown, addr).unwrap()["health"], "up", "{shown:#}");
        assert_ne!(host(&shown, addr).unwrap()["stroke"], RED, "{shown:#}");
    }
    stop.store(true, Ordering::Relaxed);
    assert_eq!(load.await.unwrap(), Vec::<String>::new());

    // The host serving the page dies too: the page says it cannot reach it.
    hosts[0].signal(libc::SIGKILL);
    let (unreachable, shown) = wait_for_page(&mut page, Duration::from_secs(5), |p| {
        p["state"] == "unreachable"
            && p["updated"]
                .as_str()
                .is_some_and(|t| t.starts_with("cannot reach host"))
    });
    assert!(
        unreachable,
        "the page never said it cannot reach its host; it shows:\n{shown:#}"
    );
}
