//! The TLS group: what TLS 1.3 and bearer tokens cost, against hosts alike
//! in everything else.
//!
//! Every system here is `math.add` on hosts of its own, started from a
//! topology file of its own and serving `math` alone: one host plaintext,
//! one with TLS, one with TLS and an access file (its caller presents a
//! token), and a forwarded pair a → b all plaintext and with TLS on both
//! links (the caller's and the peers'). Their calls take turns with every
//! other system's in the same interleaved rounds. New connections (TCP
//! connect to the `hello` answer) are measured in rounds of their own, a
//! few hundred in all, to the plaintext and the TLS host.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use wasmrpc::{Client, ClientOptions};

use super::{CallFn, Kind, Plan, System, wasmrpc_add};
use crate::hosts::{Host, Lab, Security};
use crate::report::{Goal, Outcome, Row, Section, Summary, Target, thousands};

/// TLS p50 over plaintext p50, 1 in flight: at most this.
const LATENCY_GOAL: f64 = 1.15;

/// TLS calls/s over plaintext calls/s, many in flight on one connection: at
/// least this.
const THROUGHPUT_GOAL: f64 = 0.85;

/// A `math.add` system of the group: how its hosts are secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Secured {
    /// One host, plaintext.
    Plaintext,
    /// One host, TLS.
    Tls,
    /// One host, TLS and an access file; the caller presents a token.
    TlsToken,
    /// Forwarded a → b, all plaintext.
    ForwardedPlaintext,
    /// Forwarded a → b, TLS on the caller's link and the peer link.
    ForwardedTls,
}

impl Secured {
    const ALL: [Secured; 5] = [
        Secured::Plaintext,
        Secured::Tls,
        Secured::TlsToken,
        Secured::ForwardedPlaintext,
        Secured::ForwardedTls,
    ];

    fn name(self) -> &'static str {
        match self {
            Secured::Plaintext => "`math.add`, plaintext",
            Secured::Tls => "`math.add`, TLS",
            Secured::TlsToken => "`math.add`, TLS, access file and token",
            Secured::ForwardedPlaintext => "forwarded a → b `math.add`, plaintext",
            Secured::ForwardedTls => "forwarded a → b `math.add`, TLS on both links",
        }
    }

    fn security(self) -> Security {
        match self {
            Secured::Plaintext | Secured::ForwardedPlaintext => Security::Plaintext,
            Secured::Tls | Secured::ForwardedTls => Security::Tls,
            Secured::TlsToken => Security::TlsWithToken,
        }
    }

    /// Its regions, the one called last; the one called first serves `math`
    /// (named apart from every other system's: a region's certificate is
    /// named after it).
    fn regions(self) -> &'static [&'static str] {
        match self {
            Secured::Plaintext => &["tls-off"],
            Secured::Tls => &["tls-on"],
            Secured::TlsToken => &["tls-token"],
            Secured::ForwardedPlaintext => &["tls-off-b", "tls-off-a"],
            Secured::ForwardedTls => &["tls-on-b", "tls-on-a"],
        }
    }
}

/// How a new connection is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Handshake {
    /// TCP and `hello`, to the plaintext host.
    Plaintext,
    /// TCP, a full TLS 1.3 handshake (the caller keeps no session to
    /// resume, like a process connecting once) and `hello`, to the TLS host.
    TlsFull,
    /// The same, resuming a session of an earlier connection (what a
    /// long-lived caller that reconnects does: the client's default).
    TlsResumed,
}

impl Handshake {
    const ALL: [Handshake; 3] = [
        Handshake::Plaintext,
        Handshake::TlsFull,
        Handshake::TlsResumed,
    ];

    fn name(self) -> &'static str {
        match self {
            Handshake::Plaintext => "new connection to `hello`, plaintext",
            Handshake::TlsFull => "new connection to `hello`, TLS, full handshake",
            Handshake::TlsResumed => "new connection to `hello`, TLS, resumed session",
        }
    }
}

/// The group's hosts, started, and a client of each system.
pub(super) struct SecuredHosts {
    systems: Vec<(Secured, Vec<Host>, Client)>,
}

impl SecuredHosts {
    /// Starts every system's hosts and connects a client to each.
    pub(super) async fn start(lab: &Lab) -> anyhow::Result<SecuredHosts> {
        let mut systems = Vec::new();
        for secured in Secured::ALL {
            let regions = secured.regions();
            for (i, region) in regions.iter().enumerate() {
                let plugins: &[&str] = if i == 0 { &["math"] } else { &[] };
                lab.plugin_dir(region, plugins, &[])?;
            }
            let file = format!("{}.toml", regions[regions.len() - 1]);
            let hosts = lab
                .start_regions(&file, regions, secured.security())
                .await?;
            // The host called: for a forwarded pair, once it has linked to
            // the one serving `math`.
            let called = hosts.last().expect("every system has a host");
            called.require("math.add").await?;
            let client = called.connect().await?;
            systems.push((secured, hosts, client));
        }
        Ok(SecuredHosts { systems })
    }

    /// The `math.add` systems, to measure with every other system.
    pub(super) fn systems(&self) -> Vec<System> {
        self.systems
            .iter()
            .map(|(secured, hosts, client)| {
                let pids: Vec<_> = hosts.iter().map(Host::pid).collect();
                System::new(
                    Kind::Secured(*secured),
                    secured.name(),
                    wasmrpc_add(client.clone(), "math.add"),
                    &pids,
                )
            })
            .collect()
    }

    /// New connections to the plaintext and the TLS host, each dropped once
    /// `hello` has been answered.
    pub(super) fn connections(&self) -> Vec<System> {
        let host = |wanted: Secured| {
            self.systems
                .iter()
                .find(|(secured, _, _)| *secured == wanted)
                .map(|(_, hosts, _)| &hosts[0])
        };
        let (Some(plaintext), Some(tls)) = (host(Secured::Plaintext), host(Secured::Tls)) else {
            return Vec::new();
        };
        Handshake::ALL
            .into_iter()
            .map(|handshake| {
                let host = match handshake {
                    Handshake::Plaintext => plaintext,
                    Handshake::TlsFull | Handshake::TlsResumed => tls,
                };
                let mut options = host.client_options().clone();
                if handshake == Handshake::TlsFull {
                    forget_sessions(&mut options);
                }
                System::new(
                    Kind::Connect(handshake),
                    handshake.name(),
                    connect(host.addr(), options),
                    &[host.pid()],
                )
            })
            .collect()
    }
}

/// Makes `options` keep no TLS session, so that each connection makes a
/// full handshake.
fn forget_sessions(options: &mut ClientOptions) {
    if let Some(tls) = &mut options.tls {
        let mut config = (*tls.config).clone();
        config.resumption = rustls::client::Resumption::disabled();
        tls.config = Arc::new(config);
    }
}

/// A new connection to `addr` and its `hello`, dropped at once.
fn connect(addr: SocketAddr, options: ClientOptions) -> CallFn {
    Arc::new(move |_lane| {
        let options = options.clone();
        Box::pin(async move {
            drop(Client::connect_with(addr, options).await?);
            Ok(())
        })
    })
}

/// The group's rows and the figures its comparisons need.
#[derive(Default)]
pub(super) struct TlsResults {
    rows: Vec<Row>,
    /// At 1 in flight.
    one: BTreeMap<Secured, Summary>,
    /// At the plan's many in flight.
    many: BTreeMap<Secured, Summary>,
    connect: BTreeMap<Handshake, Summary>,
}

impl TlsResults {
    /// Files a failure to start the group's hosts.
    pub(super) fn failed(&mut self, error: &anyhow::Error) {
        self.rows.push(super::failed("TLS group", error));
    }

    /// Files a `math.add` system's rows at 1 and many in flight.
    pub(super) fn record(&mut self, secured: Secured, one: Option<Row>, many: Option<Row>) {
        for (row, figures) in [(&one, &mut self.one), (&many, &mut self.many)] {
            if let Some(Row {
                outcome: Outcome::Measured(summary),
                ..
            }) = row
            {
                figures.insert(secured, *summary);
            }
        }
        self.rows.extend([one, many].into_iter().flatten());
    }

    /// Files a new-connection row.
    pub(super) fn record_connect(&mut self, handshake: Handshake, row: Option<Row>) {
        if let Some(Row {
            outcome: Outcome::Measured(summary),
            ..
        }) = &row
        {
            self.connect.insert(handshake, *summary);
        }
        self.rows.extend(row);
    }

    /// The report's TLS section: the comparisons, with the targets, then
    /// the rows.
    pub(super) fn section(self, plan: &Plan) -> Section {
        // Figures and their labels, for `Target::ratio`.
        let us = |v: Option<f64>, what: &str| v.map(|v| (v, format!("{v:.1} µs {what}")));
        let per_s = |v: Option<f64>, what: &str| v.map(|v| (v, format!("{} {what}", thousands(v))));
        let p50 = |s: Secured| self.one.get(&s).map(|s| s.p50_us);
        let p99 = |s: Secured| self.one.get(&s).map(|s| s.p99_us);
        let rate = |s: Secured| self.many.get(&s).map(|s| s.calls_per_sec);
        let connect = |h: Handshake| self.connect.get(&h).map(|s| s.p50_us);
        let host_cpu = |h: Handshake| self.connect.get(&h)?.cpu?.servers_us;
        let caller_cpu = |h: Handshake| self.connect.get(&h)?.cpu?.client_us;
        // "what: v µs, r×": a further figure beside a ratio, over plaintext's.
        let beside = |what: &str, v: Option<f64>, plaintext: Option<f64>| match (v, plaintext) {
            (Some(v), Some(p)) if p > 0.0 => Some(format!("{what}: {v:.1} µs, {:.2}×", v / p)),
            _ => None,
        };
        let notes = |notes: [Option<String>; 2]| {
            let notes: Vec<String> = notes.into_iter().flatten().collect();
            (!notes.is_empty()).then(|| notes.join("; "))
        };
        let targets = vec![
            Target::ratio(
                "TLS p50 / plaintext p50, 1 in flight",
                Goal::AtMost(LATENCY_GOAL),
                us(p50(Secured::Tls), "TLS"),
                us(p50(Secured::Plaintext), "plaintext"),
            ),
            Target::ratio(
                "TLS p99 / plaintext p99, 1 in flight",
                Goal::Reported,
                us(p99(Secured::Tls), "TLS"),
                us(p99(Secured::Plaintext), "plaintext"),
            ),
            Target::ratio(
                &format!(
                    "TLS calls/s / plaintext calls/s, {} in flight on one connection",
                    plan.in_flight
                ),
                Goal::AtLeast(THROUGHPUT_GOAL),
                per_s(rate(Secured::Tls), "TLS"),
                per_s(rate(Secured::Plaintext), "plaintext"),
            ),
            Target::ratio(
                "new connection, TCP connect to `hello` answered, p50: TLS (full handshake) / plaintext",
                Goal::Reported,
                us(connect(Handshake::TlsFull), "TLS"),
                us(connect(Handshake::Plaintext), "plaintext"),
            )
            .noting(notes([
                beside(
                    "resumed session",
                    connect(Handshake::TlsResumed),
                    connect(Handshake::Plaintext),
                ),
                None,
            ])),
            Target::ratio(
                "host CPU per new connection: TLS (full handshake) / plaintext",
                Goal::Reported,
                us(host_cpu(Handshake::TlsFull), "TLS"),
                us(host_cpu(Handshake::Plaintext), "plaintext"),
            )
            .noting(notes([
                beside(
                    "resumed session",
                    host_cpu(Handshake::TlsResumed),
                    host_cpu(Handshake::Plaintext),
                ),
                beside(
                    "the caller's, full handshake",
                    caller_cpu(Handshake::TlsFull),
                    caller_cpu(Handshake::Plaintext),
                ),
            ])),
            Target::ratio(
                "forwarded a → b p50, 1 in flight: TLS on both links / plaintext",
                Goal::Reported,
                us(p50(Secured::ForwardedTls), "TLS"),
                us(p50(Secured::ForwardedPlaintext), "plaintext"),
            ),
            Target::ratio(
                "TLS with an access file and a token p50 / TLS without, 1 in flight",
                Goal::Reported,
                us(p50(Secured::TlsToken), "token"),
                us(p50(Secured::Tls), "no access file"),
            ),
        ];
        Section {
            title: "TLS".into(),
            note: format!(
                "What TLS 1.3 (rustls, `ring`) and bearer tokens cost. Each system is \
                 `math.add` on hosts of its own serving `math` alone, alike but for how \
                 their connections are secured; their calls are measured in the same \
                 interleaved rounds as the other systems'. New connections are made one \
                 at a time, {} per kind in {} rounds, each dropped once `hello` is \
                 answered; their CPU per call is per connection. The ratios without a \
                 goal are reported for scale.",
                thousands(plan.connections as f64),
                plan.rounds,
            ),
            targets,
            rows: self.rows,
        }
    }
}
