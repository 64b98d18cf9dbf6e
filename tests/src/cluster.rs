//! Several hosts from one generated `regions.toml`, on reserved loopback ports.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::{HostBuilder, HostProcess, install_guest};

/// A free loopback port for a host to bind later.
///
/// Chosen below the kernel's ephemeral range (32768+), so that outgoing
/// connections of concurrent tests cannot take it before the host binds it.
pub fn free_addr() -> SocketAddr {
    for _ in 0..1000 {
        let port = 20_000 + fastrand::u16(..12_000);
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            return listener.local_addr().expect("local addr");
        }
    }
    panic!("no free port between 20000 and 32000");
}

/// One `[[region]]` of a test topology.
pub struct RegionSpec {
    pub name: &'static str,
    /// Number of host processes.
    pub hosts: usize,
    /// Example guests served by every host of the region.
    pub plugins: &'static [&'static str],
}

/// A written `regions.toml` with its plugin folders; hosts are started on demand.
pub struct Cluster {
    dir: TempDir,
    config: PathBuf,
    /// `(region, address in the file, address bound)` for every host.
    pub hosts: Vec<(String, SocketAddr, SocketAddr)>,
    /// `[routes]` lines, kept for rewriting the file.
    routes: String,
    /// The `[tls]` table, kept for rewriting the file.
    tls: String,
    /// More tables (`[keys]`, say), kept for rewriting the file.
    tail: String,
    /// Each host's admin listener in the file, by its listed address (see
    /// [`Cluster::with_admin`]).
    admin: BTreeMap<SocketAddr, SocketAddr>,
}

impl Cluster {
    /// Writes the topology. `behind_proxy` lists hosts (by region and index)
    /// whose address in the file is a separate port for a proxy to listen on;
    /// those hosts bind their own, different port (see [`Cluster::bound`]).
    pub fn new(
        regions: &[RegionSpec],
        routes: &[(&str, &[&str])],
        behind_proxy: &[(&str, usize)],
    ) -> Cluster {
        Cluster::with_addrs(regions, routes, behind_proxy, |_, _| free_addr())
    }

    /// [`Cluster::new`] with each host's address in the file chosen by
    /// `addr(region, index)` (addresses in network namespaces, say).
    pub fn with_addrs(
        regions: &[RegionSpec],
        routes: &[(&str, &[&str])],
        behind_proxy: &[(&str, usize)],
        mut addr: impl FnMut(&str, usize) -> SocketAddr,
    ) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut toml = String::new();
        let mut hosts = Vec::new();
        for region in regions {
            let folder = dir.path().join("plugins").join(region.name);
            std::fs::create_dir_all(&folder).unwrap();
            for name in region.plugins {
                install_guest(name, &folder);
            }
            let mut addrs = Vec::new();
            for index in 0..region.hosts {
                let listed = addr(region.name, index);
                let bound = if behind_proxy.contains(&(region.name, index)) {
                    free_addr()
                } else {
                    listed
                };
                hosts.push((region.name.to_owned(), listed, bound));
                addrs.push(format!("\"{listed}\""));
            }
            writeln!(
                toml,
                "[[region]]\nname = \"{}\"\nhosts = [{}]\nplugins = \"plugins/{}\"\n",
                region.name,
                addrs.join(", "),
                region.name
            )
            .unwrap();
        }
        if !routes.is_empty() {
            toml.push_str("[routes]\n");
            for (pattern, regions) in routes {
                let list: Vec<String> = regions.iter().map(|r| format!("\"{r}\"")).collect();
                writeln!(toml, "\"{pattern}\" = [{}]", list.join(", ")).unwrap();
            }
        }
        let config = dir.path().join("regions.toml");
        let mut cluster = Cluster {
            dir,
            config,
            hosts,
            routes: String::new(),
            tls: String::new(),
            tail: String::new(),
            admin: BTreeMap::new(),
        };
        let mut routes_toml = String::new();
        if let Some(routes) = toml.split_once("[routes]\n").map(|(_, r)| r) {
            routes_toml = routes.to_owned();
        }
        cluster.routes = routes_toml;
        std::fs::write(&cluster.config, toml).unwrap();
        cluster
    }

    /// The text of `regions.toml` for the hosts known now.
    fn render(&self) -> String {
        let mut toml = String::new();
        let mut regions: Vec<&str> = Vec::new();
        for (region, _, _) in &self.hosts {
            if !regions.contains(&region.as_str()) {
                regions.push(region);
            }
        }
        for region in regions {
            let hosts: Vec<String> = self
                .hosts
                .iter()
                .filter(|(r, _, _)| r == region)
                .map(|(_, listed, _)| format!("\"{listed}\""))
                .collect();
            let admin: Vec<String> = self
                .hosts
                .iter()
                .filter(|(r, _, _)| r == region)
                .filter_map(|(_, listed, _)| self.admin.get(listed))
                .map(|addr| format!("\"{addr}\""))
                .collect();
            let admin = if !admin.is_empty() && admin.len() == hosts.len() {
                format!("admin = [{}]\n", admin.join(", "))
            } else {
                String::new()
            };
            writeln!(
                toml,
                "[[region]]\nname = \"{region}\"\nhosts = [{}]\n{admin}plugins = \"plugins/{region}\"\n",
                hosts.join(", ")
            )
            .unwrap();
        }
        if !self.routes.is_empty() {
            toml.push_str("[routes]\n");
            toml.push_str(&self.routes);
        }
        toml.push_str(&self.tls);
        toml.push_str(&self.tail);
        toml
    }

    /// Appends `tables` (TOML text, e.g. a `[keys]` table) to
    /// `regions.toml`, rewriting it; they stay through later rewrites.
    pub fn with_tables(&mut self, tables: &str) {
        self.tail = format!("\n{tables}");
        self.replace_config(&self.render());
    }

    /// Takes host `index` of `region` out of `regions.toml` (rewriting it);
    /// the process, if running, is not stopped.
    pub fn remove_host(&mut self, region: &str, index: usize) {
        let listed = self.listed(region, index);
        self.hosts
            .retain(|(r, l, _)| !(r == region && *l == listed));
        self.replace_config(&self.render());
    }

    /// Turns TLS on for every host: a CA in `<dir>/certs`, a certificate per
    /// region there, and a `[tls]` table in `regions.toml`.
    pub fn with_tls(&mut self) -> crate::Pki {
        let pki = crate::Pki::new(&self.dir.path().join("certs"));
        let mut regions: Vec<&str> = self.hosts.iter().map(|(r, _, _)| r.as_str()).collect();
        regions.dedup();
        pki.write_regions(&regions);
        self.tls = format!(
            "\n[tls]\nca = \"certs/ca.crt\"\ntrust_domain = \"{}\"\ncerts = \"certs\"\n",
            crate::TRUST_DOMAIN
        );
        self.replace_config(&self.render());
        pki
    }

    /// Gives every host an admin listener on a free loopback port, listed
    /// in each region's `admin` of `regions.toml` (rewriting it), where
    /// `wasmrpc status` finds them; hosts started from then on open it.
    pub fn with_admin(&mut self) {
        for (_, listed, _) in &self.hosts {
            self.admin.insert(*listed, free_addr());
        }
        self.replace_config(&self.render());
    }

    /// The admin listener of host `index` of `region` in `regions.toml`.
    pub fn admin(&self, region: &str, index: usize) -> Option<SocketAddr> {
        self.admin.get(&self.listed(region, index)).copied()
    }

    /// Writes `text` as the new `regions.toml`, the way deploy tools do
    /// (write a temporary file, rename it into place).
    pub fn replace_config(&self, text: &str) {
        let tmp = self.config.with_extension("toml.part");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
    }

    /// Adds a region to `regions.toml` (rewriting it) and creates its plugin
    /// folder; start its hosts with [`Cluster::start`].
    pub fn add_region(&mut self, spec: RegionSpec) {
        let folder = self.dir.path().join("plugins").join(spec.name);
        std::fs::create_dir_all(&folder).unwrap();
        for name in spec.plugins {
            install_guest(name, &folder);
        }
        for _ in 0..spec.hosts {
            let addr = free_addr();
            self.hosts.push((spec.name.to_owned(), addr, addr));
        }
        self.replace_config(&self.render());
    }

    /// Removes a region from `regions.toml` (rewriting it).
    pub fn remove_region(&mut self, name: &str) {
        self.hosts.retain(|(r, _, _)| r != name);
        self.replace_config(&self.render());
    }

    /// The plugin folder of `region`.
    pub fn plugins(&self, region: &str) -> PathBuf {
        self.dir.path().join("plugins").join(region)
    }

    pub fn config(&self) -> &Path {
        &self.config
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The address of host `index` of `region` as written in the file.
    pub fn listed(&self, region: &str, index: usize) -> SocketAddr {
        self.entry(region, index).1
    }

    /// The address host `index` of `region` actually binds.
    pub fn bound(&self, region: &str, index: usize) -> SocketAddr {
        self.entry(region, index).2
    }

    fn entry(&self, region: &str, index: usize) -> &(String, SocketAddr, SocketAddr) {
        self.hosts
            .iter()
            .filter(|(r, _, _)| r == region)
            .nth(index)
            .unwrap_or_else(|| panic!("no host {index} in region {region}"))
    }

    /// Host `index` of `region`, to start with the builder's settings
    /// (more arguments, a log filter, a network namespace); starting it
    /// again after a kill gives it the same ports.
    pub fn host(&self, region: &str, index: usize) -> HostBuilder {
        let (_, listed, bound) = self.entry(region, index);
        let mut host = HostBuilder::new(region, *listed, &self.config);
        if let Some(admin) = self.admin.get(listed) {
            host = host.admin_on(*admin);
        }
        if bound == listed {
            host
        } else {
            host.bind(*bound)
        }
    }

    /// Starts host `index` of `region` as it is.
    pub fn start(&self, region: &str, index: usize) -> HostProcess {
        self.host(region, index).start()
    }

    /// Two regions of one host each.
    pub fn pair(
        a: (&'static str, &'static [&'static str]),
        b: (&'static str, &'static [&'static str]),
    ) -> Cluster {
        Cluster::new(
            &[
                RegionSpec {
                    name: a.0,
                    hosts: 1,
                    plugins: a.1,
                },
                RegionSpec {
                    name: b.0,
                    hosts: 1,
                    plugins: b.1,
                },
            ],
            &[],
            &[],
        )
    }

    /// Starts every host, each with an admin listener, and waits until each
    /// one's `/status` shows all the others up.
    pub fn start_all_linked(&self) -> Vec<HostProcess> {
        let hosts = self.start_each(HostBuilder::with_admin);
        for host in &hosts {
            host.wait_until_linked(hosts.len() - 1, std::time::Duration::from_secs(10));
        }
        hosts
    }

    /// Starts every host; returns them in file order.
    pub fn start_all(&self) -> Vec<HostProcess> {
        self.start_each(|builder| builder)
    }

    /// Starts every host as `adjust` sets it up, in file order.
    fn start_each(&self, adjust: impl Fn(HostBuilder) -> HostBuilder) -> Vec<HostProcess> {
        let mut seen: Vec<(String, usize)> = Vec::new();
        let mut started = Vec::new();
        for (region, _, _) in &self.hosts {
            let index = seen.iter().filter(|(r, _)| r == region).count();
            seen.push((region.clone(), index));
            started.push(adjust(self.host(region, index)).start());
        }
        started
    }
}
