//! Distributed tracing: the `traceparent` of a call's metadata followed
//! across forwards and nested calls, one span per host per router entry
//! exported over OTLP/HTTP to a real receiver, and trace ids in JSON logs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use wasmrpc::{CallOptions, Client};
use wasmrpc_tests::{
    Cluster, HostProcess, OtlpReceiver, RegionSpec, Span, cbor, eventually, eventually_async, json,
};

/// The client's trace and span, as a caller that traces itself sends them.
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn traceparent(flags: &str) -> String {
    format!("00-{TRACE}-{CLIENT_SPAN}-{flags}")
}

fn with_metadata(pairs: &[(&str, &str)]) -> CallOptions {
    CallOptions {
        metadata: pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..CallOptions::default()
    }
}

fn place_args() -> Vec<ciborium::Value> {
    vec![cbor("\"ada\""), cbor("\"sku-1\""), cbor("2")]
}

/// `orders.place(ada, sku-1, 2)` with `metadata`: the order, as JSON.
async fn place(client: &Client, metadata: &[(&str, &str)]) -> String {
    let order = client
        .call_value_with("orders.place", place_args(), with_metadata(metadata))
        .await
        .unwrap_or_else(|e| panic!("orders.place with {metadata:?}: {e}"));
    json(&order)
}

const ORDER: &str = "{\"order-id\":\"O-ada-R-sku-1-2\",\"customer\":\"ada\",\"sku\":\"sku-1\",\
    \"quantity\":2,\"reservation-id\":\"R-sku-1-2\",\"warehouse\":\"lisbon\",\"region\":";

/// `eu-west` (no plugins) in front of `us-east` (`orders`) and `ap-south`
/// (`inventory`), each host exporting to `receiver` with `flush` between
/// batches; returned once every host knows every function.
async fn three_regions(receiver: &OtlpReceiver, flush: &str) -> (Cluster, Vec<HostProcess>) {
    three_regions_with(receiver, flush, true).await
}

/// [`three_regions`], the entry host (`eu-west`) exporting only when
/// `entry_exports`.
async fn three_regions_with(
    receiver: &OtlpReceiver,
    flush: &str,
    entry_exports: bool,
) -> (Cluster, Vec<HostProcess>) {
    let cluster = Cluster::new(
        &[
            RegionSpec {
                name: "eu-west",
                hosts: 1,
                plugins: &[],
            },
            RegionSpec {
                name: "us-east",
                hosts: 1,
                plugins: &["orders"],
            },
            RegionSpec {
                name: "ap-south",
                hosts: 1,
                plugins: &["inventory"],
            },
        ],
        &[],
        &[],
    );
    let endpoint = receiver.endpoint();
    let hosts: Vec<HostProcess> = ["eu-west", "us-east", "ap-south"]
        .into_iter()
        .map(|region| {
            let host = cluster.host(region, 0).admin();
            if region == "eu-west" && !entry_exports {
                host.start()
            } else {
                host.args(&["--otlp-endpoint", &endpoint, "--otlp-flush-interval", flush])
                    .start()
            }
        })
        .collect();
    for host in &hosts {
        host.wait_until_linked(2, Duration::from_secs(10));
    }
    // The entry host must know where `orders` is, and `us-east` where
    // `inventory` is.
    for (host, function) in [
        (&hosts[0], "orders.place"),
        (&hosts[1], "inventory.stock.reserve"),
    ] {
        let client = host.client().await;
        let known = eventually_async(Duration::from_secs(10), || async {
            let catalog = client.list().await.expect("list");
            catalog.iter().any(|f| f.name == function)
        })
        .await;
        assert!(known, "{function} never reached {}'s catalog", host.addr);
    }
    (cluster, hosts)
}

/// Stops every host gracefully and waits for each to exit 0 (their spans
/// are flushed at the end of the drain).
fn stop_all(hosts: &mut [HostProcess]) {
    for host in hosts.iter() {
        host.signal(libc::SIGTERM);
    }
    for host in hosts.iter_mut() {
        let status = host.wait_exit(Duration::from_secs(15));
        assert!(
            status.is_some_and(|s| s.success()),
            "{status:?}; log:\n{}",
            host.log()
        );
    }
}

/// The one span of `region` named `name`.
fn span<'a>(spans: &'a [Span], region: &str, name: &str) -> &'a Span {
    let found: Vec<&Span> = spans
        .iter()
        .filter(|s| s.resource.get("wasmrpc.region").map(String::as_str) == Some(region))
        .filter(|s| s.name == name)
        .collect();
    assert_eq!(found.len(), 1, "{region} {name}: {spans:#?}");
    found[0]
}

/// The attributes a host gives its span of a successful call.
fn ok_attributes(function: &str, region: &str, placement: &str) -> BTreeMap<String, String> {
    [
        ("rpc.system", "wasmrpc"),
        ("rpc.method", function),
        ("wasmrpc.region", region),
        ("wasmrpc.placement", placement),
        ("wasmrpc.code", "ok"),
        ("wasmrpc.processed", "yes"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Checks the four spans of `orders.place` called at the entry host of
/// [`three_regions`]: one trace, each span the child of the one before,
/// from three hosts; returns the entry host's span.
fn assert_linked_trace<'a>(spans: &'a [Span], hosts: &[HostProcess]) -> &'a Span {
    assert_eq!(spans.len(), 4, "{spans:#?}");
    let traces: BTreeSet<&str> = spans.iter().map(|s| s.trace_id.as_str()).collect();
    assert_eq!(traces.len(), 1, "one trace: {spans:#?}");
    let ids: BTreeSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    assert_eq!(ids.len(), 4, "a span id per span: {spans:#?}");

    let entry = span(spans, "eu-west", "orders.place");
    let orders = span(spans, "us-east", "orders.place");
    let nested = span(spans, "us-east", "inventory.stock.reserve");
    let reserve = span(spans, "ap-south", "inventory.stock.reserve");
    // The chain: entry → orders' host → its guest's nested call → the
    // host that runs it.
    assert_eq!(orders.parent_span_id, entry.span_id);
    assert_eq!(nested.parent_span_id, orders.span_id);
    assert_eq!(reserve.parent_span_id, nested.span_id);

    assert_eq!(
        entry.attributes,
        ok_attributes("orders.place", "eu-west", "forwarded")
    );
    assert_eq!(
        orders.attributes,
        ok_attributes("orders.place", "us-east", "local")
    );
    assert_eq!(
        nested.attributes,
        ok_attributes("inventory.stock.reserve", "us-east", "forwarded")
    );
    assert_eq!(
        reserve.attributes,
        ok_attributes("inventory.stock.reserve", "ap-south", "local")
    );
    for span in spans {
        assert_eq!(
            (span.kind, span.status_code),
            (2, 0),
            "server, unset: {span:?}"
        );
        assert!(span.start_unix_nano > 0 && span.start_unix_nano <= span.end_unix_nano);
        assert_eq!(span.resource["service.name"], "wasmrpc");
    }
    // Each host's spans name it: three hosts, by their addresses.
    let exporters: BTreeSet<&str> = spans
        .iter()
        .map(|s| s.resource["wasmrpc.host"].as_str())
        .collect();
    let addrs: Vec<String> = hosts.iter().map(|h| h.addr.to_string()).collect();
    assert_eq!(
        exporters,
        addrs.iter().map(String::as_str).collect::<BTreeSet<_>>()
    );
    assert_eq!(entry.resource["wasmrpc.host"], addrs[0]);
    assert_eq!(orders.resource["wasmrpc.host"], addrs[1]);
    assert_eq!(reserve.resource["wasmrpc.host"], addrs[2]);
    entry
}

#[tokio::test]
async fn a_traceparent_is_followed_across_three_hosts_and_a_nested_call() {
    let receiver = OtlpReceiver::start();
    let (_cluster, mut hosts) = three_regions(&receiver, "100ms").await;
    let client = hosts[0].client().await;
    let order = place(
        &client,
        &[("traceparent", &traceparent("01")), ("tracestate", "k=v")],
    )
    .await;
    assert_eq!(order, format!("{ORDER}\"us-east\"}}"));

    let spans = receiver.wait_for(4, Duration::from_secs(10));
    drop(client);
    stop_all(&mut hosts);
    assert_eq!(receiver.spans(), spans, "no span after the first four");
    let entry = assert_linked_trace(&spans, &hosts);
    assert_eq!(entry.trace_id, TRACE);
    assert_eq!(entry.parent_span_id, CLIENT_SPAN, "the caller's span");
}

/// A host that exports nothing takes no part: it passes the caller's
/// context on as it came, so the next host's span is the caller's child
/// and the trace stays linked.
#[tokio::test]
async fn a_host_without_an_exporter_passes_the_trace_context_on_unchanged() {
    let receiver = OtlpReceiver::start();
    let (_cluster, mut hosts) = three_regions_with(&receiver, "100ms", false).await;
    let client = hosts[0].client().await;
    let order = place(
        &client,
        &[("traceparent", &traceparent("01")), ("tracestate", "k=v")],
    )
    .await;
    assert_eq!(order, format!("{ORDER}\"us-east\"}}"));
    let spans = receiver.wait_for(3, Duration::from_secs(10));
    drop(client);
    stop_all(&mut hosts);
    assert_eq!(receiver.spans().len(), 3, "{spans:#?}");
    assert!(spans.iter().all(|s| s.trace_id == TRACE), "{spans:#?}");
    assert!(
        spans
            .iter()
            .all(|s| s.resource["wasmrpc.region"] != "eu-west"),
        "{spans:#?}"
    );
    let orders = span(&spans, "us-east", "orders.place");
    let nested = span(&spans, "us-east", "inventory.stock.reserve");
    let reserve = span(&spans, "ap-south", "inventory.stock.reserve");
    assert_eq!(
        orders.parent_span_id, CLIENT_SPAN,
        "the caller's span, as sent"
    );
    assert_eq!(nested.parent_span_id, orders.span_id);
    assert_eq!(reserve.parent_span_id, nested.span_id);
}

#[tokio::test]
async fn a_call_without_traceparent_still_yields_one_linked_trace_flushed_at_shutdown() {
    let receiver = OtlpReceiver::start();
    // Batches wait an hour: only the drain at shutdown sends them.
    let (_cluster, mut hosts) = three_regions(&receiver, "1h").await;
    let client = hosts[0].client().await;
    let order = client
        .call_value("orders.place", place_args())
        .await
        .unwrap();
    assert_eq!(json(&order), format!("{ORDER}\"us-east\"}}"));
    drop(client);
    assert!(receiver.spans().is_empty(), "{:#?}", receiver.spans());

    stop_all(&mut hosts);
    let spans = receiver.wait_for(4, Duration::from_secs(5));
    let entry = assert_linked_trace(&spans, &hosts);
    assert_eq!(entry.parent_span_id, "", "a new trace's root: {entry:?}");
    assert_ne!(entry.trace_id, TRACE);
    assert_eq!(entry.trace_id.len(), 32);
}

/// One host serving `orders` and `inventory`, exporting to `receiver`.
fn orders_host(receiver: &OtlpReceiver, extra: &[&str]) -> HostProcess {
    let endpoint = receiver.endpoint();
    let mut args = vec![
        "--otlp-endpoint",
        &endpoint,
        "--otlp-flush-interval",
        "50ms",
    ];
    args.extend(extra);
    HostProcess::builder()
        .plugins(&["orders", "inventory"])
        .args(&args)
        .start()
}

#[tokio::test]
async fn a_malformed_traceparent_starts_a_new_trace_and_the_call_succeeds() {
    let receiver = OtlpReceiver::start();
    let host = orders_host(&receiver, &[]);
    let client: Client = host.client().await;
    for bad in [
        "garbage",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ] {
        let order = place(&client, &[("traceparent", bad)]).await;
        assert_eq!(order, format!("{ORDER}\"test\"}}"), "{bad}");
    }
    // Four calls, two spans each (the call and its local nested call).
    let spans = receiver.wait_for(8, Duration::from_secs(10));
    assert_eq!(spans.len(), 8, "{spans:#?}");
    let roots: Vec<&Span> = spans
        .iter()
        .filter(|s| s.parent_span_id.is_empty())
        .collect();
    assert_eq!(roots.len(), 4, "{spans:#?}");
    let traces: BTreeSet<&str> = roots.iter().map(|s| s.trace_id.as_str()).collect();
    assert_eq!(traces.len(), 4, "a new trace per call: {roots:#?}");
    for root in roots {
        assert_eq!(root.name, "orders.place");
        assert_ne!(root.trace_id, TRACE);
        let children: Vec<&Span> = spans
            .iter()
            .filter(|s| s.parent_span_id == root.span_id)
            .collect();
        assert_eq!(children.len(), 1, "{spans:#?}");
        assert_eq!(children[0].name, "inventory.stock.reserve");
        assert_eq!(children[0].trace_id, root.trace_id);
        assert_eq!(children[0].attributes["wasmrpc.placement"], "local");
    }
}

#[tokio::test]
async fn an_unsampled_traceparent_records_no_span_and_a_failed_call_is_an_error_span() {
    let receiver = OtlpReceiver::start();
    let host = orders_host(&receiver, &[]);
    let client = host.client().await;
    client
        .call_value_with(
            "orders.place",
            place_args(),
            with_metadata(&[("traceparent", &traceparent("00"))]),
        )
        .await
        .unwrap();
    // Then a sampled call that fails in the nested call: not enough stock.
    let sampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let error = client
        .call_value_with(
            "orders.place",
            vec![cbor("\"ada\""), cbor("\"sku-2\""), cbor("5")],
            with_metadata(&[("traceparent", sampled)]),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (error.code, error.message.as_str()),
        (
            wasmrpc::ErrorCode::HandlerError,
            "inventory refused: insufficient(3)"
        ),
    );

    let spans = receiver.wait_for(2, Duration::from_secs(10));
    // Spans go out in the order calls end: none of the unsampled call came
    // before these.
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let place = spans.iter().find(|s| s.name == "orders.place").unwrap();
    let reserve = spans
        .iter()
        .find(|s| s.name == "inventory.stock.reserve")
        .unwrap();
    assert_eq!(place.trace_id, "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(place.parent_span_id, "b7ad6b7169203331");
    assert_eq!(reserve.parent_span_id, place.span_id);
    for span in [place, reserve] {
        assert_eq!(span.attributes["wasmrpc.code"], "handler_error", "{span:?}");
        assert_eq!(span.attributes["wasmrpc.processed"], "yes", "{span:?}");
        assert_eq!(span.status_code, 2, "error status: {span:?}");
    }
}

#[tokio::test]
async fn with_json_logs_a_guests_log_line_carries_the_trace_id_sent() {
    let host = HostProcess::builder()
        .plugins(&["orders", "inventory"])
        .args(&["--log-format", "json"])
        .start();
    let client = host.client().await;
    client
        .call_value_with(
            "orders.place",
            place_args(),
            with_metadata(&[("traceparent", &traceparent("01"))]),
        )
        .await
        .unwrap();
    let mut line = None;
    let logged = eventually(Duration::from_secs(5), || {
        line = host
            .log()
            .lines()
            .find(|l| l.contains("placing order for ada"))
            .map(str::to_owned);
        line.is_some()
    });
    assert!(logged, "log:\n{}", host.log());
    let line: serde_json::Value = serde_json::from_str(&line.unwrap()).expect("a JSON line");
    assert_eq!(line["message"], "placing order for ada: 2 x sku-1");
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["plugin"], "orders");
    assert_eq!(line["trace_id"], TRACE);
    // Every line of the log is JSON.
    for text in host.log().lines() {
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(text);
        assert!(parsed.is_ok(), "not JSON: {text}");
    }
}
