//! `/status`: what a host is, serves and sees, as JSON. `wasmrpc status`
//! reads the same types back.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::plugins::{PluginSet, Refusal};
use crate::region::PeerSnapshot;
use crate::region::keys::KeyRule;

/// One host at one moment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub region: String,
    /// The host's address in `regions.toml` (its listen address).
    pub host: String,
    /// The `wasmrpc` version it runs.
    pub version: String,
    pub uptime_seconds: f64,
    /// Listening and not draining: what `/readyz` answers.
    pub ready: bool,
    pub draining: bool,
    pub plugins: Vec<PluginStatus>,
    pub peers: Vec<PeerStatus>,
    pub routes: Vec<RouteStatus>,
    /// The `[keys]` rules in force.
    #[serde(default)]
    pub keys: Vec<KeyStatus>,
}

/// A plugin: the version serving, and the last file of its name refused.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PluginStatus {
    pub name: String,
    /// `None`: no version loaded (it was refused, see `last_refusal`).
    pub file: Option<String>,
    /// SHA-256 of the `.wasm` file, hex.
    pub sha256: Option<String>,
    /// SHA-256 of the sidecar `.toml`, when there is one.
    pub sidecar_sha256: Option<String>,
    pub functions: Vec<String>,
    /// RFC 3339, UTC.
    pub loaded_at: Option<String>,
    /// How the serving version's compiled code was obtained.
    #[serde(default)]
    pub compiled: Option<CompiledStatus>,
    /// Linear memory each instance may use, in MiB (the host's default or
    /// the sidecar's `memory_mib`).
    #[serde(default)]
    pub memory_mib: Option<u64>,
    pub last_refusal: Option<RefusalStatus>,
}

/// How a plugin's compiled code was obtained.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CompiledStatus {
    /// Taken from the compile cache rather than compiled.
    pub from_cache: bool,
    /// What it took (compiling, or reading and checking the cache entry).
    pub millis: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RefusalStatus {
    /// RFC 3339, UTC.
    pub at: String,
    pub file: String,
    pub error: String,
}

/// A peer as this host sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerStatus {
    pub region: String,
    pub address: String,
    /// `up`, `ejected` or `down`.
    pub health: String,
    /// Smoothed ping round-trip time, once measured.
    pub rtt_ms: Option<f64>,
    pub in_flight: usize,
    /// Host-level failures in a row.
    pub failures: u32,
    /// Milliseconds left of the current ejection.
    pub ejected_for_ms: Option<u64>,
    /// Ejections since this host started.
    pub ejections: u64,
    /// Links lost since this host started.
    pub links_lost: u64,
    /// Functions in the peer's catalog.
    pub functions: usize,
    /// Why the link is down, when it is.
    pub down_because: Option<String>,
    /// The load the peer reported in its last `pong`, while it counts (3
    /// ping intervals). Absent from a peer that reports none (protocol
    /// version 2) and from hosts too old to show it.
    #[serde(default)]
    pub reported: Option<ReportedLoad>,
    /// The figure the router ranks the peer by after health, lateness,
    /// region and `[routes]` order: the smoothed round trip scaled by the
    /// calls in flight on the peer and by how busy it reports itself, in
    /// seconds. Lower is better.
    #[serde(default)]
    pub score: Option<f64>,
}

/// A peer's own load, as it reported it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReportedLoad {
    /// Calls it is running or forwarding, from every caller.
    pub in_flight: u64,
    /// Wasm instances it has running a call.
    pub instances: u64,
    /// Its instance pool's capacity.
    pub instances_max: u64,
    /// Its CPU use over about the last second, 0.0 to 1.0 of its cores;
    /// absent where it cannot measure it.
    pub cpu: Option<f64>,
    /// How long ago the report arrived.
    pub age_ms: u64,
}

/// A `[routes]` entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RouteStatus {
    pub pattern: String,
    pub regions: Vec<String>,
}

/// A `[keys]` rule.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyStatus {
    /// The functions it applies to.
    pub pattern: String,
    /// Where their key is, e.g. `args[0]` or `metadata.tenant`.
    pub key: String,
    /// Key patterns pinned to regions.
    #[serde(default)]
    pub pins: Vec<PinStatus>,
}

/// A pin of a `[keys]` rule: keys matching `keys` go to `regions` first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PinStatus {
    pub keys: String,
    pub regions: Vec<String>,
}

impl KeyStatus {
    pub fn from_rule(rule: &KeyRule) -> KeyStatus {
        KeyStatus {
            pattern: rule.functions.to_string(),
            key: rule.key.to_string(),
            pins: rule
                .pins
                .iter()
                .map(|(keys, regions)| PinStatus {
                    keys: keys.as_str().to_owned(),
                    regions: regions.clone(),
                })
                .collect(),
        }
    }
}

pub(crate) fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

impl PeerStatus {
    pub fn from_snapshot(peer: &PeerSnapshot) -> PeerStatus {
        PeerStatus {
            region: peer.region.clone(),
            address: peer.addr.clone(),
            health: peer.health.as_str().to_owned(),
            rtt_ms: peer.rtt.map(|rtt| rtt.as_secs_f64() * 1e3),
            in_flight: peer.in_flight,
            failures: peer.failures,
            ejected_for_ms: peer
                .ejected_for
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            ejections: peer.ejections,
            links_lost: peer.links_lost,
            functions: peer.functions,
            down_because: peer.down_because.clone(),
            reported: peer.reported.map(|(load, age)| ReportedLoad {
                in_flight: load.in_flight,
                instances: load.instances,
                instances_max: load.instances_max,
                cpu: load.cpu,
                age_ms: u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
            }),
            score: Some(peer.score),
        }
    }
}

/// The plugins of `set`, and those refused that are not loaded, by name.
pub(crate) fn plugins(
    set: &PluginSet,
    refusals: &std::collections::BTreeMap<String, Refusal>,
) -> Vec<PluginStatus> {
    let refusal = |name: &str| {
        refusals.get(name).map(|r| RefusalStatus {
            at: rfc3339(r.at),
            file: r.path.display().to_string(),
            error: r.error.clone(),
        })
    };
    let mut out: Vec<PluginStatus> = set
        .plugins()
        .map(|loaded| PluginStatus {
            name: loaded.plugin.name.to_string(),
            file: Some(loaded.path.display().to_string()),
            sha256: Some(loaded.wasm_sha256.clone()),
            sidecar_sha256: loaded.sidecar_sha256.clone(),
            functions: loaded
                .plugin
                .functions
                .iter()
                .map(|f| f.name.clone())
                .collect(),
            loaded_at: Some(rfc3339(loaded.loaded_at)),
            compiled: Some(CompiledStatus {
                from_cache: loaded.plugin.compiled.from_cache,
                millis: u64::try_from(loaded.plugin.compiled.took.as_millis()).unwrap_or(u64::MAX),
            }),
            memory_mib: Some(loaded.plugin.limits.memory as u64 >> 20),
            last_refusal: refusal(&loaded.plugin.name),
        })
        .collect();
    for name in refusals.keys() {
        if set.plugin(name).is_none() {
            out.push(PluginStatus {
                name: name.clone(),
                file: None,
                sha256: None,
                sidecar_sha256: None,
                functions: Vec::new(),
                loaded_at: None,
                compiled: None,
                memory_mib: None,
                last_refusal: refusal(name),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
