//! TLS, mutual TLS between regions, tokens and their permissions, and
//! rotation, on real hosts with real certificates made in each test.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use ciborium::Value;
use wasmrpc::certs::Leaf;
use wasmrpc::net::{CallOptions, Client, ClientOptions, ClientTls, Connection};
use wasmrpc::protocol::{ErrorCode, Processed, Role, Secret};
use wasmrpc::service::CallContext;
use wasmrpc_tests::{Cluster, HostProcess, Network, Pki, RegionSpec, TRUST_DOMAIN, eventually};

fn add(a: i64, b: i64) -> Vec<Value> {
    vec![Value::from(a), Value::from(b)]
}

/// Client options trusting `pki`, with `token`.
fn options(pki: &Pki, token: Option<&str>) -> ClientOptions {
    ClientOptions {
        tls: Some(pki.client_tls()),
        token: token.map(Secret::new),
        ..ClientOptions::default()
    }
}

async fn connect(host: &HostProcess, options: ClientOptions) -> Result<Client, wasmrpc::CallError> {
    Client::connect_with(host.host_arg(), options).await
}

/// One connection to `host`, never reopened: for what the host does to a
/// connection itself.
async fn connect_once(
    host: &HostProcess,
    options: ClientOptions,
) -> Result<Connection, wasmrpc::CallError> {
    Connection::connect_with(host.host_arg(), options).await
}

/// eu-west serves `math`, us-east `greeter` and `relay`: one host each, TLS on.
fn tls_pair() -> (Cluster, Pki) {
    let mut cluster = Cluster::new(
        &[
            RegionSpec {
                name: "eu-west",
                hosts: 1,
                plugins: &["math"],
            },
            RegionSpec {
                name: "us-east",
                hosts: 1,
                plugins: &["greeter", "relay"],
            },
        ],
        &[],
        &[],
    );
    let pki = cluster.with_tls();
    (cluster, pki)
}

/// Writes an access file with the tokens `(name, token, patterns)`.
fn write_access(path: &Path, tokens: &[(&str, &str, &[&str])]) {
    let mut text = String::new();
    for (name, token, patterns) in tokens {
        let digest: String = wasmrpc::auth::digest(token)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let patterns: Vec<String> = patterns.iter().map(|p| format!("\"{p}\"")).collect();
        text.push_str(&format!(
            "[[token]]\nname = \"{name}\"\nsha256 = \"{digest}\"\nfunctions = [{}]\n\n",
            patterns.join(", ")
        ));
    }
    let tmp = path.with_extension("part");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_cross_regions_over_mutual_tls_and_plaintext_callers_are_told_why() {
    let (cluster, pki) = tls_pair();
    let hosts = cluster.start_all_linked();
    let (eu, us) = (&hosts[0], &hosts[1]);

    // A caller trusting the CA calls through us-east; the call is forwarded
    // to eu-west over the hosts' mutual TLS link.
    let client = connect(us, options(&pki, None)).await.unwrap();
    assert_eq!(
        client.call_value("math.add", add(2, 3)).await.unwrap(),
        5.into()
    );

    // A plaintext caller at the TLS port: told why, in a frame it can read.
    let error = Client::connect(us.host_arg()).await.err().unwrap();
    assert_eq!(error.code, ErrorCode::Unauthenticated);
    assert_eq!(
        error.message,
        format!(
            "`{}` refused the connection: this host accepts TLS connections only: connect with TLS, trusting the cluster CA",
            us.host_arg()
        )
    );
    us.wait_for_log("refused a plaintext connection", 1, Duration::from_secs(5));
    assert!(us.log().contains("addr=127.0.0.1:"), "{}", us.log());

    // A TLS caller at a plaintext port.
    let plain = HostProcess::start(&["math"]);
    let error = connect(&plain, options(&pki, None)).await.err().unwrap();
    assert_eq!(
        error.message,
        format!(
            "`{}` refused the connection: the host did not answer with TLS: is this a plaintext port?",
            plain.host_arg()
        )
    );
    plain.wait_for_log(
        "refused a TLS connection: this port speaks plaintext",
        1,
        Duration::from_secs(5),
    );

    // A caller trusting another CA: refused on its side, logged on the host's.
    let stranger = Pki::unwritten(&cluster.dir().join("elsewhere"));
    let error = connect(eu, options(&stranger, None)).await.err().unwrap();
    assert_eq!(error.code, ErrorCode::Unauthenticated);
    assert!(
        error.message.ends_with(
            "the host's certificate was refused: it is not signed by a CA this side trusts"
        ),
        "{}",
        error.message
    );
    eu.wait_for_log(
        "refused a TLS connection: the caller refused this host's certificate",
        1,
        Duration::from_secs(5),
    );

    // A name the certificate does not carry.
    let mut named = options(&pki, None);
    named.tls = Some(
        pki.client_tls()
            .with_server_name("billing.example")
            .unwrap(),
    );
    let error = connect(eu, named).await.err().unwrap();
    assert!(
        error.message.ends_with(
            "the host's certificate was refused: it does not name the address connected to"
        ),
        "{}",
        error.message
    );

    // Both hosts still serve.
    assert_eq!(
        client.call_value("math.add", add(1, 1)).await.unwrap(),
        2.into()
    );
    let direct = connect(eu, options(&pki, None)).await.unwrap();
    assert_eq!(
        direct.call_value("math.add", add(3, 4)).await.unwrap(),
        7.into()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_not_yet_valid_host_certificates_are_refused_by_callers() {
    let (cluster, pki) = tls_pair();
    let now = SystemTime::now();
    for (leaf_dates, why) in [
        (
            (
                now - Duration::from_secs(7200),
                now - Duration::from_secs(3600),
            ),
            "it has expired",
        ),
        (
            (
                now + Duration::from_secs(3600),
                now + Duration::from_secs(7200),
            ),
            "it is not valid yet",
        ),
    ] {
        let mut leaf = Pki::host_leaf("eu-west");
        (leaf.not_before, leaf.not_after) = leaf_dates;
        pki.write("eu-west", &leaf);
        let host = cluster.start("eu-west", 0);
        let error = connect(&host, options(&pki, None)).await.err().unwrap();
        assert_eq!(error.code, ErrorCode::Unauthenticated);
        assert!(
            error
                .message
                .ends_with(&format!("the host's certificate was refused: {why}")),
            "{}",
            error.message
        );
        drop(host);
    }
}

/// Tries the `peer` role at `host` as `region`, with `identity` (a
/// certificate and key) or none.
async fn claim_peer(
    host: &HostProcess,
    pki: &Pki,
    region: &str,
    identity: Option<&wasmrpc::certs::Issued>,
) -> Result<Client, wasmrpc::CallError> {
    let tls = match identity {
        Some(issued) => ClientTls::with_identity(
            pki.ca.cert_pem().as_bytes(),
            issued.cert_pem.as_bytes(),
            issued.key_pem.as_bytes(),
            "test identity",
        )
        .unwrap(),
        None => pki.client_tls(),
    };
    let options = ClientOptions {
        role: Role::Peer,
        region: Some(region.to_owned()),
        tls: Some(tls),
        ..ClientOptions::default()
    };
    Client::connect_with(host.host_arg(), options).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_role_needs_a_certificate_of_the_region_it_claims() {
    let (cluster, pki) = tls_pair();
    let eu = cluster.start("eu-west", 0);
    let us_cert = pki.ca.issue(&Pki::host_leaf("us-east")).unwrap();
    let refused = |why: &str| format!("`{}` refused the connection: {why}", eu.host_arg());

    // No certificate at all.
    let error = claim_peer(&eu, &pki, "us-east", None).await.err().unwrap();
    assert_eq!(error.code, ErrorCode::Unauthenticated);
    assert_eq!(
        error.message,
        refused(
            "the `peer` role needs a host certificate naming region `us-east`; this connection has none"
        )
    );
    // A host of us-east claiming to be eu-west.
    let error = claim_peer(&eu, &pki, "eu-west", Some(&us_cert))
        .await
        .err()
        .unwrap();
    assert_eq!(
        error.message,
        refused("the certificate names region `us-east`, but the `peer` hello claims `eu-west`")
    );
    // A caller's certificate from the same CA.
    let caller = pki.ca.issue(&Leaf::client(TRUST_DOMAIN, "ada", 1)).unwrap();
    let error = claim_peer(&eu, &pki, "us-east", Some(&caller))
        .await
        .err()
        .unwrap();
    assert_eq!(
        error.message,
        refused(
            "the `peer` role needs a host certificate naming region `us-east`; this connection has none"
        )
    );
    // A region the topology does not have.
    let stranger = pki.ca.issue(&Pki::host_leaf("ap-south")).unwrap();
    let error = claim_peer(&eu, &pki, "ap-south", Some(&stranger))
        .await
        .err()
        .unwrap();
    assert_eq!(
        error.message,
        refused("region `ap-south` is not in this host's topology")
    );
    eu.wait_for_log("refused a connection: ", 4, Duration::from_secs(5));

    // The real thing.
    let peer = claim_peer(&eu, &pki, "us-east", Some(&us_cert))
        .await
        .unwrap();
    assert_eq!(
        peer.call_value("math.add", add(2, 2)).await.unwrap(),
        4.into()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_dialing_a_peer_checks_it_is_of_the_region_the_file_says() {
    // The file puts two hosts in us-east; the second address is taken by an
    // eu-west host (with a genuine eu-west certificate).
    let mut cluster = Cluster::new(
        &[
            RegionSpec {
                name: "eu-west",
                hosts: 1,
                plugins: &["math"],
            },
            RegionSpec {
                name: "us-east",
                hosts: 2,
                plugins: &["greeter"],
            },
        ],
        &[],
        &[],
    );
    cluster.with_tls();
    let eu = cluster.host("eu-west", 0).admin().start();
    let impostor = cluster.host("us-east", 1).region("eu-west").start();
    let _us = cluster.start("us-east", 0);
    eu.wait_for_log(
        &format!(
            "peer refused: `{}` refused the connection: the host's certificate was refused: its certificate names region `eu-west`, but the topology puts this address in `us-east`",
            cluster.listed("us-east", 1)
        ),
        1,
        Duration::from_secs(10),
    );
    // The genuine us-east host links; the impostor's address stays down.
    eu.wait_for_peer(cluster.listed("us-east", 0), Duration::from_secs(10), |p| {
        p.health == "up"
    })
    .await;
    let impostor_seen = eu.peer(cluster.listed("us-east", 1)).await.unwrap();
    assert_eq!(impostor_seen.health, "down", "{impostor_seen:?}");
    drop(impostor);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_authenticate_callers_and_their_patterns_bound_what_they_call() {
    let (cluster, pki) = tls_pair();
    let access = cluster.dir().join("access.toml");
    let tour = wasmrpc::auth::new_token();
    let ops = wasmrpc::auth::new_token();
    write_access(
        &access,
        &[("tour", &tour, &["math.add"]), ("ops", &ops, &["*"])],
    );
    let access_arg = access.to_str().unwrap();
    let eu = cluster
        .host("eu-west", 0)
        .args(&["--access", access_arg])
        .log_filter("debug")
        .admin()
        .start();
    let us = cluster
        .host("us-east", 0)
        .args(&["--access", access_arg])
        .log_filter("debug")
        .admin()
        .start();
    us.wait_until_linked(1, Duration::from_secs(10));
    eu.wait_until_linked(1, Duration::from_secs(10));

    // No token, a wrong one.
    let error = connect(&us, options(&pki, None)).await.err().unwrap();
    assert_eq!(error.code, ErrorCode::Unauthenticated);
    assert_eq!(
        error.message,
        format!(
            "`{}` refused the connection: this host requires a token in `hello` (the CLI's --token, or WASMRPC_TOKEN)",
            us.host_arg()
        )
    );
    // The real token with its last digit changed.
    let last = if tour.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &tour[..tour.len() - 1]);
    let error = connect(&us, options(&pki, Some(&forged)))
        .await
        .err()
        .unwrap();
    assert_eq!(
        error.message,
        format!(
            "`{}` refused the connection: the token is not valid here: unknown, or revoked",
            us.host_arg()
        )
    );

    // `tour` may call math.add, through us-east (forwarded to eu-west).
    let client = connect(&us, options(&pki, Some(&tour))).await.unwrap();
    assert_eq!(
        client.call_value("math.add", add(2, 3)).await.unwrap(),
        5.into()
    );
    // Not math.divide: refused at us-east, where the call entered; eu-west,
    // which serves it, never sees it.
    let error = client
        .call_value("math.divide", add(6, 3))
        .await
        .unwrap_err();
    assert_eq!(
        (error.code, error.processed, error.region.as_deref()),
        (ErrorCode::PermissionDenied, Processed::No, Some("us-east"))
    );
    assert_eq!(error.message, "token `tour` may not call `math.divide`");
    let error = client
        .call_value(
            "greeter.greet",
            vec!["Ada".into(), Value::Null, "english".into()],
        )
        .await
        .unwrap_err();
    assert_eq!(
        (error.code, error.processed, error.region.as_deref()),
        (ErrorCode::PermissionDenied, Processed::No, Some("us-east"))
    );
    assert_eq!(error.message, "token `tour` may not call `greeter.greet`");
    let listed: Vec<String> = client
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(listed, ["math.add"]);

    // The forwarded call was authorised at us-east; eu-west logs its
    // principal, vouched for by us-east's certificate.
    eu.wait_for_log("principal=tour", 1, Duration::from_secs(5));
    assert!(
        eu.log()
            .contains("function=math.add principal=tour from=us-east"),
        "{}",
        eu.log()
    );
    assert!(!eu.log().contains("function=math.divide"), "{}", eu.log());

    // A caller cannot name a principal of its own.
    let admin = connect_once(&us, options(&pki, Some(&ops))).await.unwrap();
    let mut context = CallContext::new(Duration::from_secs(5));
    context.principal = Some(Arc::from("root"));
    let error = admin
        .call_in("math.add", add(1, 1), &context)
        .await
        .unwrap_err();
    assert_eq!(
        (error.code, error.message.as_str()),
        (
            ErrorCode::PermissionDenied,
            "only a peer host may name the principal of a call"
        )
    );
    // `ops` may call anything.
    assert_eq!(
        admin
            .call_in(
                "greeter.greet",
                vec!["Ada".into(), Value::Null, "english".into()],
                &CallContext::new(Duration::from_secs(5)),
            )
            .await
            .unwrap(),
        Value::from("Hello, Ada!")
    );

    // No token ever reaches a log, even at debug level.
    for host in [&eu, &us] {
        let log = host.log();
        for secret in [&tour, &ops, &forged] {
            assert!(!log.contains(secret.as_str()), "a token is in the log");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_closes_its_connections_and_a_broken_file_changes_nothing() {
    let (cluster, pki) = tls_pair();
    let access = cluster.dir().join("access.toml");
    let (keep, revoke) = (wasmrpc::auth::new_token(), wasmrpc::auth::new_token());
    write_access(
        &access,
        &[("keep", &keep, &["*"]), ("gone", &revoke, &["math.*"])],
    );
    let eu = cluster
        .host("eu-west", 0)
        .args(&["--access", access.to_str().unwrap()])
        .start();
    let kept = connect(&eu, options(&pki, Some(&keep))).await.unwrap();
    let doomed = connect_once(&eu, options(&pki, Some(&revoke)))
        .await
        .unwrap();
    let call = |a: i64, b: i64| {
        let doomed = doomed.clone();
        async move {
            doomed
                .call_in(
                    "math.add",
                    add(a, b),
                    &CallContext::new(Duration::from_secs(5)),
                )
                .await
        }
    };
    assert_eq!(call(1, 2).await.unwrap(), 3.into());

    // A broken file: logged, nothing changes.
    let tmp = access.with_extension("part");
    std::fs::write(&tmp, "[[token]]\nname = \"keep\"\n").unwrap();
    std::fs::rename(&tmp, &access).unwrap();
    eu.wait_for_log(
        "keeping the previous access file",
        1,
        Duration::from_secs(5),
    );
    assert_eq!(call(2, 2).await.unwrap(), 4.into());

    // The token removed: its connection closes, the other stays.
    write_access(&access, &[("keep", &keep, &["*"])]);
    tokio::time::timeout(Duration::from_secs(5), doomed.closed())
        .await
        .expect("the revoked token's connection closes");
    let error = call(1, 1).await.unwrap_err();
    assert!(
        error.message.contains("token `gone` was revoked"),
        "{}",
        error.message
    );
    assert_eq!(
        kept.call_value("math.add", add(5, 5)).await.unwrap(),
        10.into()
    );
    let error = connect(&eu, options(&pki, Some(&revoke)))
        .await
        .err()
        .unwrap();
    assert_eq!(error.code, ErrorCode::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_host_certificate_under_load_fails_no_call() {
    let (cluster, pki) = tls_pair();
    let hosts = cluster.start_all_linked();
    let us = &hosts[1];
    let calls = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    // Long-lived connections and a fresh connection per call, through
    // us-east to eu-west: both links' certificates rotate.
    for fresh in [false, true, false] {
        let (addr, options) = (us.host_arg(), options(&pki, None));
        let (calls, stop) = (calls.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut client = Client::connect_with(addr.as_str(), options.clone()).await?;
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if fresh {
                    client = Client::connect_with(addr.as_str(), options.clone()).await?;
                }
                match client
                    .call_value_with("math.add", add(1, 2), CallOptions::default())
                    .await
                {
                    Ok(value) if value == Value::from(3) => {
                        calls.fetch_add(1, Ordering::Relaxed);
                    }
                    other => failures.push(format!("{other:?}")),
                }
            }
            Ok::<_, wasmrpc::CallError>(failures)
        }));
    }
    eventually(Duration::from_secs(10), || {
        calls.load(Ordering::Relaxed) > 100
    });

    // New certificates for both regions from the same CA, with a new
    // validity: each host logs the reload and serves the new one.
    let before = calls.load(Ordering::Relaxed);
    let mut rotated = Vec::new();
    for region in ["eu-west", "us-east"] {
        let mut leaf = Leaf::host(TRUST_DOMAIN, region, &[IpAddr::from([127, 0, 0, 1])], 60);
        leaf.common_name = format!("{region} rotated");
        rotated.push(pki.write(region, &leaf));
    }
    for host in &hosts {
        host.wait_for_log(
            "TLS certificate, key or CA changed",
            1,
            Duration::from_secs(10),
        );
    }
    eventually(Duration::from_secs(10), || {
        calls.load(Ordering::Relaxed) > before + 200
    });
    stop.store(true, Ordering::Relaxed);
    for task in load {
        let failures = task.await.unwrap().unwrap();
        assert!(failures.is_empty(), "failed calls: {failures:?}");
    }

    // A new connection gets the new certificate.
    let presented = presented_certificate(us, &pki).await;
    assert_eq!(presented, pem_der(&rotated[1].cert_pem));

    // A broken certificate file changes nothing, and says so.
    std::fs::write(cluster.dir().join("certs/us-east.crt"), "not a certificate").unwrap();
    us.wait_for_log(
        "keeping the previous TLS material",
        1,
        Duration::from_secs(10),
    );
    assert_eq!(
        presented_certificate(us, &pki).await,
        pem_der(&rotated[1].cert_pem)
    );
    let client = connect(us, options(&pki, None)).await.unwrap();
    assert_eq!(
        client.call_value("math.add", add(2, 2)).await.unwrap(),
        4.into()
    );

    // So does a certificate of another region.
    pki.write("us-east", &Pki::host_leaf("eu-west"));
    us.wait_for_log(
        "names region `eu-west`, but this host serves `us-east`; keeping the previous TLS material",
        1,
        Duration::from_secs(10),
    );
    assert_eq!(
        presented_certificate(us, &pki).await,
        pem_der(&rotated[1].cert_pem)
    );
}

/// The certificate a new TLS connection to `host` is shown (DER).
async fn presented_certificate(host: &HostProcess, pki: &Pki) -> Vec<u8> {
    let tcp = tokio::net::TcpStream::connect(host.host_arg())
        .await
        .unwrap();
    let config = pki.client_tls().config;
    let stream =
        wasmrpc_client::stream::connect_tls(tcp, config, IpAddr::from([127, 0, 0, 1]).into())
            .await
            .unwrap();
    stream.peer_certificates().unwrap()[0].to_vec()
}

/// The DER bytes of the first certificate of a PEM text.
fn pem_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_off_loopback_needs_insecure_and_is_logged_loudly() {
    let plugins = tempfile::tempdir().unwrap();
    let refused = std::process::Command::new(wasmrpc_tests::wasmrpc_bin())
        .args(["host", "--region", "eu-west", "--config", "absent.toml"])
        .args(["--listen", "0.0.0.0:0", "--plugins"])
        .arg(plugins.path())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(
            "refusing to serve plaintext on `0.0.0.0:0`, which is not a loopback address: give the cluster CA and this host's certificate"
        ),
        "{stderr}"
    );

    let host = HostProcess::builder()
        .plugin_dir(plugins.path())
        .listen(std::net::SocketAddr::from(([0, 0, 0, 0], 0)))
        .args(&["--insecure"])
        .start();
    host.wait_for_log(
        "INSECURE: serving plaintext on `0.0.0.0:0`",
        1,
        Duration::from_secs(5),
    );
    host.wait_for_log("INSECURE: no access file", 1, Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_never_sends_its_token_in_plaintext_beyond_loopback() {
    // A plaintext host on an address of another network namespace.
    let network = Network::new(1);
    let addr = std::net::SocketAddr::new(network.addr(0), 7100);
    let host = HostProcess::builder()
        .plugins(&["math"])
        .listen(addr)
        .netns(network.netns(0))
        .args(&["--insecure"])
        .start();
    let token = ClientOptions {
        token: Some(Secret::new("wrpc_secret")),
        ..ClientOptions::default()
    };
    let error = Client::connect_with(host.host_arg(), token)
        .await
        .err()
        .unwrap();
    assert_eq!(
        (error.code, error.processed),
        (ErrorCode::InvalidArgs, Processed::No)
    );
    assert_eq!(
        error.message,
        format!(
            "refusing to send a token in plaintext to `{addr}`, which is not a loopback address: connect with TLS (the cluster CA)"
        )
    );
    // Without a token, plaintext works there (the host was started
    // `--insecure`).
    let client = Client::connect(host.host_arg()).await.unwrap();
    assert_eq!(
        client.call_value("math.add", add(1, 2)).await.unwrap(),
        3.into()
    );
}
