//! Hosts on a real network: network namespaces joined by a bridge, each with
//! its own address, and links that can be cut.
//!
//! Each namespace gets a veth pair: one end inside it, with its address, the
//! other end a port of a bridge in the test's own namespace, which also has
//! an address on the subnet so the test can reach every host. Cutting a link
//! takes the bridge port down: packets to and from that namespace are
//! dropped without a reset or an ICMP error, as on a partitioned network.
//! Needs root (`ip netns`), as CI has.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

/// A bridge and `n` namespaces on subnet `10.77.X.0/24`; all removed when
/// dropped.
pub struct Network {
    bridge: String,
    namespaces: Vec<(String, String, IpAddr)>,
    subnet: u8,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` (iproute2): {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

impl Network {
    /// Creates `count` namespaces on one bridge.
    ///
    /// # Panics
    ///
    /// When they cannot be created (not root, no iproute2): this test needs
    /// a real network and says so rather than passing without one.
    pub fn new(count: usize) -> Network {
        // Unique among the networks of this run (tests run in parallel)
        // and, by the pid, among runs.
        static NETWORKS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let nth = NETWORKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 10;
        let id = (std::process::id() % 10_000) * 10 + nth;
        // A subnet no interface of this machine is on.
        let routes = Command::new("ip")
            .args(["-4", "route", "show"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let subnet = (0..200)
            .map(|i| ((id + i) % 200) as u8 + 20)
            .find(|n| !routes.contains(&format!("10.77.{n}.")))
            .expect("a free 10.77.x.0/24 subnet");
        let mut network = Network {
            bridge: format!("wr{id}br"),
            namespaces: Vec::new(),
            subnet,
        };
        if let Err(error) = network.build(count) {
            panic!("cannot build the test network (needs root and iproute2): {error}");
        }
        network
    }

    fn build(&mut self, count: usize) -> Result<(), String> {
        let (bridge, subnet) = (self.bridge.clone(), self.subnet);
        // Left over by a killed run of the same pid: start clean.
        let _ = ip(&["link", "del", &bridge]);
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("10.77.{subnet}.1/24"),
            "dev",
            &bridge,
        ])?;
        ip(&["link", "set", &bridge, "up"])?;
        // Unique among the networks of this run (tests run in parallel)
        // and, by the pid, among runs.
        static NETWORKS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let nth = NETWORKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 10;
        let id = (std::process::id() % 10_000) * 10 + nth;
        for i in 0..count {
            let netns = format!("wasmrpc-test-{id}-{i}");
            let (outside, inside) = (format!("wr{id}h{i}"), format!("wr{id}n{i}"));
            let addr = IpAddr::V4(Ipv4Addr::new(10, 77, subnet, 10 + i as u8));
            let _ = ip(&["netns", "del", &netns]);
            ip(&["netns", "add", &netns])?;
            self.namespaces.push((netns.clone(), outside.clone(), addr));
            ip(&[
                "link", "add", &outside, "type", "veth", "peer", "name", &inside,
            ])?;
            ip(&["link", "set", &inside, "netns", &netns])?;
            ip(&["link", "set", &outside, "master", &bridge])?;
            ip(&["link", "set", &outside, "up"])?;
            ip(&[
                "-n",
                &netns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                &inside,
            ])?;
            ip(&["-n", &netns, "link", "set", &inside, "up"])?;
            ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// The name of namespace `i`, for `ip netns exec`.
    pub fn netns(&self, i: usize) -> &str {
        &self.namespaces[i].0
    }

    /// The address of namespace `i`.
    pub fn addr(&self, i: usize) -> IpAddr {
        self.namespaces[i].2
    }

    /// Cuts namespace `i` off the network: its packets are dropped.
    pub fn cut(&self, i: usize) {
        ip(&["link", "set", &self.namespaces[i].1, "down"]).expect("cut the link");
    }

    /// Joins namespace `i` to the network again.
    pub fn heal(&self, i: usize) {
        ip(&["link", "set", &self.namespaces[i].1, "up"]).expect("heal the link");
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth pair with it.
        for (netns, _, _) in &self.namespaces {
            let _ = ip(&["netns", "del", netns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}
