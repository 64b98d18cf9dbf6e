//! Calls routed by a key taken from them (`[keys]` in `regions.toml`):
//! every key lands on one host whichever host it entered by, the keys
//! spread evenly, a host leaving the file moves only its own keys, a killed
//! host's keys go to their next host and come back, and pinned keys go to
//! their region first.
//!
//! Where each call ran is read from the `ledger` plugin's log lines
//! (`recorded <entry> in <region>`), host process by host process; where
//! it should run is computed from the documented rendezvous weight.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use ciborium::Value;
use futures::StreamExt;
use wasmrpc::observe::status::{KeyStatus, PinStatus};
use wasmrpc::region::keys::weight;
use wasmrpc::{CallOptions, Client};
use wasmrpc_tests::{Cluster, HostProcess, RegionSpec, ledger_runs};

/// Calls in flight at once.
const IN_FLIGHT: usize = 64;

/// The ledger entries recorded by each host, by host index: entry → runs.
fn recorded(hosts: &[&HostProcess]) -> Vec<HashMap<String, usize>> {
    hosts
        .iter()
        .map(|host| ledger_runs(&[host.log()], "recorded"))
        .collect()
}

/// The index in `addrs` of the host that owns `key`: the heaviest weight.
fn owner(addrs: &[String], key: &str) -> usize {
    (0..addrs.len())
        .max_by_key(|&i| weight(&addrs[i], key.as_bytes()))
        .unwrap()
}

/// Sends `ledger.record(key, 0)` for every `(key, entry host)`, `IN_FLIGHT`
/// at a time, each through the client of its entry host; every call must
/// be answered.
async fn record_all(clients: &[Client], calls: Vec<(String, usize)>, metadata: Option<&str>) {
    let results: Vec<_> = futures::stream::iter(calls)
        .map(|(key, entry)| {
            let client = clients[entry].clone();
            async move {
                let mut options = CallOptions::default();
                if let Some(name) = metadata {
                    options.metadata.insert(name.to_owned(), key.clone());
                }
                let result = client
                    .call_value_with(
                        "ledger.record",
                        vec![key.as_str().into(), 0.into()],
                        options,
                    )
                    .await;
                (key, result)
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    for (key, result) in results {
        if let Err(error) = result {
            panic!("`ledger.record({key})` failed: {error}");
        }
    }
}

async fn clients(hosts: &[&HostProcess]) -> Vec<Client> {
    let mut clients = Vec::new();
    for host in hosts {
        clients.push(host.client().await);
    }
    clients
}

/// For each key, the one host it ran on (`None` if it ran on several).
fn placement(runs: &[HashMap<String, usize>]) -> BTreeMap<String, Option<usize>> {
    let mut placed: BTreeMap<String, Option<usize>> = BTreeMap::new();
    for (host, entries) in runs.iter().enumerate() {
        for entry in entries.keys() {
            placed
                .entry(entry.clone())
                .and_modify(|at| *at = None)
                .or_insert(Some(host));
        }
    }
    placed
}

fn three_hosts() -> Cluster {
    Cluster::new(
        &[RegionSpec {
            name: "us-east",
            hosts: 3,
            plugins: &["ledger", "relay"],
        }],
        &[],
        &[],
    )
}

/// 10,000 keys over 3 hosts, each sent twice through two different hosts:
/// each runs twice on one host, the one its weight names, whichever host it
/// entered by; each host gets its share within 10%. Nested calls (through
/// `relay.call`) follow the same rule. Then one host leaves `regions.toml`
/// while serving: ≤ 40% of the keys move, and only those it owned.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_key_lands_on_one_host_and_a_host_leaving_moves_only_its_keys() {
    let mut cluster = three_hosts();
    cluster.with_tables("[keys]\n\"ledger.*\" = \"args[0]\"\n");
    std::fs::write(
        cluster.plugins("us-east").join("relay.toml"),
        "calls = [\"ledger.record\"]\n",
    )
    .unwrap();
    let hosts = cluster.start_all_linked();
    let all: Vec<&HostProcess> = hosts.iter().collect();
    let addrs: Vec<String> = (0..3)
        .map(|i| cluster.listed("us-east", i).to_string())
        .collect();
    assert_eq!(
        hosts[0].status().await.keys,
        [KeyStatus {
            pattern: "ledger.*".into(),
            key: "args[0]".into(),
            pins: vec![],
        }]
    );
    let clients = clients(&all).await;

    const KEYS: usize = 10_000;
    let keys: Vec<String> = (0..KEYS).map(|n| format!("key-{n}")).collect();
    let calls = keys
        .iter()
        .enumerate()
        .flat_map(|(n, key)| [(key.clone(), n % 3), (key.clone(), (n + 1) % 3)])
        .collect();
    record_all(&clients, calls, None).await;

    let runs = recorded(&all);
    let placed = placement(&runs);
    assert_eq!(placed.len(), KEYS);
    let mut counts = [0usize; 3];
    for key in &keys {
        let at = placed[key].unwrap_or_else(|| panic!("`{key}` ran on several hosts"));
        assert_eq!(at, owner(&addrs, key), "`{key}` ran on host {at}");
        assert_eq!(runs[at][key], 2, "`{key}` ran {} times", runs[at][key]);
        counts[at] += 1;
    }
    println!("keys per host: {counts:?}");
    let fair = KEYS / 3;
    for count in counts {
        assert!(
            count * 10 >= fair * 9 && count * 10 <= fair * 11,
            "{counts:?}: not within 10% of {fair}"
        );
    }

    // Nested calls route by the same rule: `relay.call` at host 0 records
    // entries that land on their owners.
    let nested: Vec<String> = (0..300).map(|n| format!("nested-{n}")).collect();
    for key in &nested {
        let mut args = Vec::new();
        ciborium::into_writer(
            &Value::Array(vec![key.as_str().into(), 0.into()]),
            &mut args,
        )
        .unwrap();
        clients[0]
            .call_value(
                "relay.call",
                vec!["ledger.record".into(), Value::Bytes(args)],
            )
            .await
            .unwrap();
    }
    let placed = placement(&recorded(&all));
    for key in &nested {
        assert_eq!(placed[key], Some(owner(&addrs, key)), "nested `{key}`");
    }
    let before: Vec<usize> = keys
        .iter()
        .map(|key| placed[key].expect("one host"))
        .collect();

    // Host 2 leaves the file while serving; hosts 0 and 1 apply it.
    cluster.remove_host("us-east", 2);
    for host in &hosts[..2] {
        host.wait_for_log("applying the new topology", 1, Duration::from_secs(10));
    }
    let on_2 = recorded(&all)[2].len();
    let calls = keys
        .iter()
        .enumerate()
        .map(|(n, key)| (key.clone(), n % 2))
        .collect();
    record_all(&clients[..2], calls, None).await;
    let after = recorded(&all);
    assert_eq!(after[2].len(), on_2, "host 2 got calls after it left");
    let mut moved = 0;
    for (key, was) in keys.iter().zip(&before) {
        let now = (0..2)
            .find(|&h| {
                after[h].get(key).copied().unwrap_or(0) > runs[h].get(key).copied().unwrap_or(0)
            })
            .unwrap_or_else(|| panic!("`{key}` did not run again"));
        if now != *was {
            assert_eq!(*was, 2, "`{key}` moved from host {was}, which stayed");
            assert_eq!(now, owner(&addrs[..2], key));
            moved += 1;
        }
    }
    println!("moved {moved} of {KEYS} keys");
    assert_eq!(
        moved, counts[2],
        "every key of host 2 moved, and only those"
    );
    assert!(moved * 10 <= KEYS * 4, "{moved} keys moved");
}

/// A host killed with `kill -9`: its keys go to the next host in their
/// order; started again, it gets them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_hosts_keys_go_to_their_next_host_and_come_back() {
    let mut cluster = three_hosts();
    cluster.with_tables("[keys]\n\"ledger.*\" = \"args[0]\"\n");
    let mut hosts = cluster.start_all_linked();
    let addrs: Vec<String> = (0..3)
        .map(|i| cluster.listed("us-east", i).to_string())
        .collect();
    let clients = clients(&hosts[..2].iter().collect::<Vec<_>>()).await;
    // The keys host 2 owns, and where each goes without it.
    let keys: Vec<String> = (0..)
        .map(|n| format!("k-{n}"))
        .filter(|key| owner(&addrs, key) == 2)
        .take(300)
        .collect();

    hosts[2].signal(libc::SIGKILL);
    hosts[2].wait_exit(Duration::from_secs(5));
    let dead = cluster.listed("us-east", 2);
    for host in &hosts[..2] {
        host.wait_for_peer(dead, Duration::from_secs(10), |p| p.health == "down")
            .await;
    }
    let entries: Vec<(String, usize)> = keys
        .iter()
        .enumerate()
        .map(|(n, key)| (key.clone(), n % 2))
        .collect();
    record_all(&clients, entries.clone(), None).await;
    let runs = recorded(&hosts.iter().collect::<Vec<_>>());
    for key in &keys {
        let at: Vec<usize> = (0..2).filter(|&h| runs[h].contains_key(key)).collect();
        // Its next host: the heavier of the two left.
        assert_eq!(at, [owner(&addrs[..2], key)], "`{key}`");
    }

    // Host 2 again, on its own port: its keys return to it.
    hosts[2] = cluster.host("us-east", 2).with_admin().start();
    let back = cluster.listed("us-east", 2);
    for host in &hosts[..2] {
        host.wait_for_peer(back, Duration::from_secs(10), |p| p.health == "up")
            .await;
    }
    record_all(&clients, entries, None).await;
    let again = recorded(&hosts.iter().collect::<Vec<_>>());
    for key in &keys {
        assert_eq!(
            again[2].get(key),
            Some(&1),
            "`{key}` did not return to host 2"
        );
        for h in 0..2 {
            assert_eq!(
                again[h].get(key),
                runs[h].get(key),
                "`{key}` ran on host {h} again"
            );
        }
    }
}

/// Pins: `eu-*` tenants (a metadata entry) go to `eu-west` whichever host
/// they enter by; with `eu-west` down they fall back to their next host,
/// and return when it is back. Other tenants follow the hash over all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pinned_tenants_go_to_their_region_and_fall_back_by_key() {
    let mut cluster = Cluster::new(
        &[
            RegionSpec {
                name: "eu-west",
                hosts: 1,
                plugins: &["ledger"],
            },
            RegionSpec {
                name: "us-east",
                hosts: 2,
                plugins: &["ledger"],
            },
        ],
        &[],
        &[],
    );
    cluster.with_tables(
        "[keys]\n\"ledger.*\" = { key = \"metadata.tenant\", pin = { \"eu-*\" = [\"eu-west\"] } }\n",
    );
    let mut hosts = cluster.start_all_linked();
    assert_eq!(
        hosts[1].status().await.keys,
        [KeyStatus {
            pattern: "ledger.*".into(),
            key: "metadata.tenant".into(),
            pins: vec![PinStatus {
                keys: "eu-*".into(),
                regions: vec!["eu-west".into()],
            }],
        }]
    );
    let addrs: Vec<String> = [("eu-west", 0), ("us-east", 0), ("us-east", 1)]
        .iter()
        .map(|(r, i)| cluster.listed(r, *i).to_string())
        .collect();
    // Callers enter by the us-east hosts only.
    let clients = clients(&[&hosts[1], &hosts[2]]).await;
    let tenants = |prefix: &str, tag: &str| -> Vec<(String, usize)> {
        (0..200)
            .map(|n| (format!("{prefix}-{n}-{tag}"), n % 2))
            .collect()
    };
    record_all(&clients, tenants("eu", "a"), Some("tenant")).await;
    record_all(&clients, tenants("us", "a"), Some("tenant")).await;
    let runs = recorded(&hosts.iter().collect::<Vec<_>>());
    let placed = placement(&runs);
    for (tenant, _) in tenants("eu", "a") {
        assert_eq!(
            placed[&tenant],
            Some(0),
            "`{tenant}` did not run in eu-west"
        );
    }
    for (tenant, _) in tenants("us", "a") {
        assert_eq!(placed[&tenant], Some(owner(&addrs, &tenant)), "`{tenant}`");
    }
    // Some `us-` tenants are eu-west's by the hash alone: pins are per key.
    assert!(tenants("us", "a").iter().any(|(t, _)| placed[t] == Some(0)));

    // eu-west down: its tenants go to their next host, a us-east one.
    hosts[0].signal(libc::SIGKILL);
    hosts[0].wait_exit(Duration::from_secs(5));
    for host in &hosts[1..] {
        host.wait_for_peer(cluster.listed("eu-west", 0), Duration::from_secs(10), |p| {
            p.health == "down"
        })
        .await;
    }
    record_all(&clients, tenants("eu", "b"), Some("tenant")).await;
    let placed = placement(&recorded(&hosts.iter().collect::<Vec<_>>()));
    for (tenant, _) in tenants("eu", "b") {
        let next = 1 + owner(&addrs[1..], &tenant);
        assert_eq!(placed[&tenant], Some(next), "`{tenant}`");
    }

    // Back: the tenants return to eu-west.
    hosts[0] = cluster.host("eu-west", 0).with_admin().start();
    for host in &hosts[1..] {
        host.wait_for_peer(cluster.listed("eu-west", 0), Duration::from_secs(10), |p| {
            p.health == "up"
        })
        .await;
    }
    record_all(&clients, tenants("eu", "c"), Some("tenant")).await;
    let placed = placement(&recorded(&hosts.iter().collect::<Vec<_>>()));
    for (tenant, _) in tenants("eu", "c") {
        assert_eq!(
            placed[&tenant],
            Some(0),
            "`{tenant}` did not return to eu-west"
        );
    }

    // From the CLI: `--meta tenant=...` is the key.
    let out = wasmrpc_tests::cli(&[
        "call",
        "--host",
        &hosts[2].host_arg(),
        "--meta",
        "tenant=eu-cli",
        "ledger.record",
        "\"by-cli\"",
        "0",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "\"eu-west\"\n");
}
