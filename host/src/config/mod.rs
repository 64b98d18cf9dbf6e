//! `regions.toml`: the topology every host reads.
//!
//! ```toml
//! [[region]]
//! name = "eu-west"                  # [a-z0-9-]+, unique
//! hosts = ["127.0.0.1:7101"]        # one listen address per host process, unique across the file
//! plugins = "plugins/eu-west"       # plugin folder, relative to this file
//! admin = ["127.0.0.1:9101"]        # optional: each host's admin listener, in the order of `hosts`
//!
//! [routes]                          # optional: region preference per function pattern
//! "billing.*" = ["us-east", "eu-west"]
//!
//! [keys]                            # optional: route calls by a key taken from the call
//! "ledger.*" = "args[0]"
//! "cache.*" = { key = "metadata.tenant", pin = { "eu-*" = ["eu-west"] } }
//!
//! [tls]                             # optional: TLS on every host of the file
//! ca = "certs/ca.crt"               # the cluster CA certificate (PEM), relative to this file
//! trust_domain = "wasmrpc.local"    # SPIFFE trust domain of the hosts' region identities
//! certs = "certs"                   # each region's <region>.crt and <region>.key (default: the CA's folder)
//! ```

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::region::keys::{KeyRule, RawKeyRule};

/// Why a `regions.toml` cannot be used. Each variant names the offending key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read `{path}`")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid `{path}`: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("`region` is empty: define at least one `[[region]]`")]
    NoRegions,
    #[error("region name `{0}` must match [a-z0-9-]+")]
    BadRegionName(String),
    #[error("region `{0}` is defined twice")]
    DuplicateRegion(String),
    #[error("region `{0}`: `hosts` is empty")]
    NoHosts(String),
    #[error("region `{region}`: host `{host}` is not an IP:port address")]
    BadHost { region: String, host: String },
    #[error(
        "region `{region}`: `admin` has {admin} addresses for {hosts} hosts (one per host, in \
         the order of `hosts`)"
    )]
    AdminCount {
        region: String,
        admin: usize,
        hosts: usize,
    },
    #[error("region `{region}`: admin address `{addr}` is not an IP:port address")]
    BadAdmin { region: String, addr: String },
    #[error("host `{host}` is listed twice (regions `{first}` and `{second}`)")]
    DuplicateHost {
        host: String,
        first: String,
        second: String,
    },
    #[error("region `{region}`: plugin folder `{path}` does not exist")]
    MissingPlugins { region: String, path: PathBuf },
    #[error("routes.\"{pattern}\": unknown region `{region}`")]
    UnknownRouteRegion { pattern: String, region: String },
    #[error("routes.\"{pattern}\": a pattern is `*`, a function name, or a prefix ending in `*`")]
    BadRoutePattern { pattern: String },
    #[error("keys.\"{pattern}\": {message}")]
    BadKeyRule { pattern: String, message: String },
    #[error("keys.\"{pattern}\": pin `{keys}` names unknown region `{region}`")]
    UnknownKeyRegion {
        pattern: String,
        keys: String,
        region: String,
    },
    #[error("tls.trust_domain `{0}` must be lowercase letters, digits, `-`, `.` and `_`")]
    BadTrustDomain(String),
    #[error("unknown region `{name}`; `{path}` defines {known}")]
    UnknownRegion {
        name: String,
        path: PathBuf,
        known: String,
    },
}

/// The parsed file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// `[[region]]` tables, in file order.
    #[serde(rename = "region", default)]
    pub regions: Vec<Region>,
    /// `[routes]`: `"pattern" = ["region", ...]`, the preferred regions for
    /// functions matching the pattern. When several patterns match a
    /// function, the most specific wins (its name, then the longest prefix,
    /// then `*`), so the order in the file does not matter.
    #[serde(default)]
    pub routes: BTreeMap<String, Vec<String>>,
    /// `[keys]`: `"pattern" = "args[0]"` or `{ key = "...", pin = {...} }`:
    /// where the key of calls to matching functions is, and the regions
    /// some keys are pinned to (see [`crate::region::keys`]).
    #[serde(default)]
    pub keys: BTreeMap<String, RawKeyRule>,
    /// `[tls]`: the cluster CA and where hosts find their certificates.
    #[serde(default)]
    pub tls: Option<TlsTable>,
    /// The folder the file is in; relative plugin folders start there.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The file it was read from, for messages.
    #[serde(skip)]
    pub path: PathBuf,
}

/// One `[[region]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// `name = "eu-west"`
    pub name: String,
    /// `hosts = ["127.0.0.1:7101"]`: the listen address of each host process.
    pub hosts: Vec<String>,
    /// `plugins = "plugins/eu-west"`: the plugin folder of this region's hosts.
    pub plugins: PathBuf,
    /// `admin = ["127.0.0.1:9101"]`: the admin listener of each host, in the
    /// order of `hosts` (optional; `wasmrpc status` reads them).
    #[serde(default)]
    pub admin: Vec<String>,
}

impl Region {
    /// The admin address of the host listening on `host`, if the file gives one.
    pub fn admin_of(&self, host: &str) -> Option<SocketAddr> {
        let index = self.hosts.iter().position(|h| h == host)?;
        self.admin.get(index)?.parse().ok()
    }
}

/// `[tls]`: TLS for every host of the file, and mutual TLS between them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsTable {
    /// `ca = "certs/ca.crt"`: the cluster CA certificate every host's
    /// certificate chains to, relative to the file.
    pub ca: PathBuf,
    /// `trust_domain = "wasmrpc.local"`: hosts' certificates name their
    /// region as `spiffe://<trust_domain>/wasmrpc/region/<region>`.
    pub trust_domain: String,
    /// `certs = "certs"`: the folder of each region's `<region>.crt` and
    /// `<region>.key` (a host's `--tls-cert` and `--tls-key` override them);
    /// default: the CA's folder.
    #[serde(default)]
    pub certs: Option<PathBuf>,
}

impl Topology {
    /// The TLS files of a host of `region`: the CA of `[tls]`, and the
    /// region's certificate and key in its `certs` folder, unless given.
    pub fn tls_files(
        &self,
        region: &str,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Option<crate::tls::TlsFiles> {
        let tls = self.tls.as_ref()?;
        let folder = self.certs_dir()?;
        Some(crate::tls::TlsFiles {
            cert: cert.unwrap_or_else(|| folder.join(format!("{region}.crt"))),
            key: key.unwrap_or_else(|| folder.join(format!("{region}.key"))),
            ca: self.base_dir.join(&tls.ca),
            trust_domain: tls.trust_domain.clone(),
        })
    }

    /// The folder of the regions' certificates and keys: `[tls]`'s `certs`,
    /// or the CA's folder, resolved against the file's folder; `None`
    /// without `[tls]`.
    pub fn certs_dir(&self) -> Option<PathBuf> {
        let tls = self.tls.as_ref()?;
        Some(match &tls.certs {
            Some(folder) => self.base_dir.join(folder),
            None => {
                let ca = self.base_dir.join(&tls.ca);
                ca.parent().map(Path::to_path_buf).unwrap_or_default()
            }
        })
    }

    /// Reads and parses `path` (not yet validated).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Read`] or [`ConfigError::Parse`].
    pub fn from_file(path: &Path) -> Result<Topology, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut topology = Topology::from_str(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })?;
        topology.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        topology.path = path.to_owned();
        Ok(topology)
    }

    /// Parses TOML text (not yet validated); relative paths stay relative to
    /// the current directory.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Parse`] with toml's message (it names the key and line).
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(text: &str) -> Result<Topology, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("regions.toml"),
            message: e.to_string().trim_end().to_owned(),
        })
    }

    /// Checks names, addresses, uniqueness, routes and plugin folders.
    ///
    /// # Errors
    ///
    /// The first problem found, naming the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.regions.is_empty() {
            return Err(ConfigError::NoRegions);
        }
        let mut names = HashSet::new();
        let mut hosts: BTreeMap<&str, &str> = BTreeMap::new();
        for region in &self.regions {
            let valid = !region.name.is_empty()
                && region
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !valid {
                return Err(ConfigError::BadRegionName(region.name.clone()));
            }
            if !names.insert(region.name.as_str()) {
                return Err(ConfigError::DuplicateRegion(region.name.clone()));
            }
            if region.hosts.is_empty() {
                return Err(ConfigError::NoHosts(region.name.clone()));
            }
            for host in &region.hosts {
                if host.parse::<SocketAddr>().is_err() {
                    return Err(ConfigError::BadHost {
                        region: region.name.clone(),
                        host: host.clone(),
                    });
                }
                if let Some(first) = hosts.insert(host, &region.name) {
                    return Err(ConfigError::DuplicateHost {
                        host: host.clone(),
                        first: first.to_owned(),
                        second: region.name.clone(),
                    });
                }
            }
            if !region.admin.is_empty() && region.admin.len() != region.hosts.len() {
                return Err(ConfigError::AdminCount {
                    region: region.name.clone(),
                    admin: region.admin.len(),
                    hosts: region.hosts.len(),
                });
            }
            for addr in &region.admin {
                if addr.parse::<SocketAddr>().is_err() {
                    return Err(ConfigError::BadAdmin {
                        region: region.name.clone(),
                        addr: addr.clone(),
                    });
                }
                if let Some(first) = hosts.insert(addr, &region.name) {
                    return Err(ConfigError::DuplicateHost {
                        host: addr.clone(),
                        first: first.to_owned(),
                        second: region.name.clone(),
                    });
                }
            }
            let folder = self.plugin_dir(region);
            if !folder.is_dir() {
                return Err(ConfigError::MissingPlugins {
                    region: region.name.clone(),
                    path: folder,
                });
            }
        }
        if let Some(tls) = &self.tls {
            let valid = !tls.trust_domain.is_empty()
                && tls
                    .trust_domain
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
            if !valid {
                return Err(ConfigError::BadTrustDomain(tls.trust_domain.clone()));
            }
        }
        for (pattern, regions) in &self.routes {
            let star = pattern.find('*');
            if pattern.is_empty() || star.is_some_and(|i| i != pattern.len() - 1) {
                return Err(ConfigError::BadRoutePattern {
                    pattern: pattern.clone(),
                });
            }
            if let Some(region) = regions.iter().find(|r| !names.contains(r.as_str())) {
                return Err(ConfigError::UnknownRouteRegion {
                    pattern: pattern.clone(),
                    region: region.clone(),
                });
            }
        }
        self.key_rules()?;
        Ok(())
    }

    /// The `[keys]` rules, parsed and checked against the regions.
    ///
    /// # Errors
    ///
    /// The first rule that is wrong, naming its pattern.
    pub fn key_rules(&self) -> Result<Vec<KeyRule>, ConfigError> {
        let mut rules = Vec::with_capacity(self.keys.len());
        for (pattern, raw) in &self.keys {
            let rule = KeyRule::parse(pattern, raw).map_err(|message| ConfigError::BadKeyRule {
                pattern: pattern.clone(),
                message,
            })?;
            for (keys, regions) in &rule.pins {
                if let Some(region) = regions
                    .iter()
                    .find(|r| !self.regions.iter().any(|known| known.name == **r))
                {
                    return Err(ConfigError::UnknownKeyRegion {
                        pattern: pattern.clone(),
                        keys: keys.as_str().to_owned(),
                        region: region.clone(),
                    });
                }
            }
            rules.push(rule);
        }
        Ok(rules)
    }

    /// The region called `name`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::UnknownRegion`] listing the regions the file defines.
    pub fn region(&self, name: &str) -> Result<&Region, ConfigError> {
        self.regions
            .iter()
            .find(|r| r.name == name)
            .ok_or_else(|| ConfigError::UnknownRegion {
                name: name.to_owned(),
                path: self.path.clone(),
                known: self
                    .regions
                    .iter()
                    .map(|r| format!("`{}`", r.name))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The plugin folder of `region`, resolved against the file's folder.
    pub fn plugin_dir(&self, region: &Region) -> PathBuf {
        self.base_dir.join(&region.plugins)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Topology, ConfigError> {
        let mut t = Topology::from_str(text)?;
        t.base_dir = std::env::temp_dir();
        t.validate().map(|()| t)
    }

    #[test]
    fn unknown_key_names_the_key() {
        let err = parse(
            "[[region]]\nname = \"a\"\nhosts = [\"127.0.0.1:1\"]\nplugins = \".\"\ncolour = 1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `colour`"), "{err}");
    }

    #[test]
    fn duplicate_host_is_refused() {
        let err = parse(
            "[[region]]\nname = \"a\"\nhosts = [\"127.0.0.1:1\"]\nplugins = \".\"\n\
             [[region]]\nname = \"b\"\nhosts = [\"127.0.0.1:1\"]\nplugins = \".\"\n",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "host `127.0.0.1:1` is listed twice (regions `a` and `b`)"
        );
    }

    #[test]
    fn missing_plugin_folder_is_refused() {
        let err = parse(
            "[[region]]\nname = \"a\"\nhosts = [\"127.0.0.1:1\"]\nplugins = \"no-such-dir-xyz\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("region `a`: plugin folder `"), "{err}");
        assert!(err.ends_with("no-such-dir-xyz` does not exist"), "{err}");
    }

    #[test]
    fn routes_must_name_known_regions() {
        let err = parse(
            "[[region]]\nname = \"a\"\nhosts = [\"127.0.0.1:1\"]\nplugins = \".\"\n\
             [routes]\n\"billing.*\" = [\"a\", \"z\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(err, "routes.\"billing.*\": unknown region `z`");
    }

    #[test]
    fn key_rules_are_parsed_and_checked() {
        let regions = "[[region]]\nname = \"eu\"\nhosts = [\"127.0.0.1:1\"]\nplugins = \".\"\n\
                       [[region]]\nname = \"us\"\nhosts = [\"127.0.0.1:2\"]\nplugins = \".\"\n";
        let topology = parse(&format!(
            "{regions}[keys]\n\"ledger.*\" = \"args[0]\"\n\
             \"cache.*\" = {{ key = \"metadata.tenant\", pin = {{ \"eu-*\" = [\"eu\"], \"*\" = [\"us\", \"eu\"] }} }}\n"
        ))
        .unwrap();
        let rules = topology.key_rules().unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].functions.as_str(), "cache.*");
        assert_eq!(rules[0].key.to_string(), "metadata.tenant");
        assert_eq!(rules[0].pinned(b"eu-acme"), Some(&["eu".to_owned()][..]));
        assert_eq!(
            rules[0].pinned(b"ap-acme"),
            Some(&["us".to_owned(), "eu".to_owned()][..])
        );
        assert_eq!(rules[1].key.to_string(), "args[0]");

        let err = |keys: &str| {
            parse(&format!("{regions}[keys]\n{keys}\n"))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("\"ledger.*\" = \"args[x]\""),
            "keys.\"ledger.*\": `args[x]` is not a key: write `args[N]` (argument N, from 0), \
             `args[N].field` (a record field; `.` again for a nested one, `[M]` for a list \
             element) or `metadata.NAME` (a metadata entry)"
        );
        assert_eq!(
            err("\"led*ger\" = \"args[0]\""),
            "keys.\"led*ger\": `led*ger` is not a function pattern: write `*`, a function name, \
             or a prefix ending in `*`"
        );
        assert_eq!(
            err("\"ledger.*\" = { key = \"args[0]\", pin = { \"eu-*\" = [\"mars\"] } }"),
            "keys.\"ledger.*\": pin `eu-*` names unknown region `mars`"
        );
        assert_eq!(
            err("\"ledger.*\" = { key = \"args[0]\", pin = { \"eu-*\" = [] } }"),
            "keys.\"ledger.*\": pin `eu-*`: name at least one region"
        );
        // A table needs its `key`, and nothing else but `pin`.
        assert!(err("\"ledger.*\" = { pin = { \"eu-*\" = [\"eu\"] } }").starts_with("invalid `"),);
        assert!(err("\"ledger.*\" = 3").starts_with("invalid `"));
    }
}
