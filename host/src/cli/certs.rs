//! `wasmrpc certs`: development certificates for the hosts of
//! `regions.toml` (and for callers), under the cluster CA its `[tls]` table
//! names.
//!
//! Every file is replaced atomically: written to a temporary file in the
//! same folder (named `.<name>.<random>.tmp`), then renamed over the old one,
//! so a host watching the folder never reads half a file. A key is written
//! before its certificate: a watcher that reloads when the certificate
//! changes finds the matching key already in place.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::certs::{DevCa, Issued, Leaf};
use crate::config::Topology;

/// How long a new CA is valid: ten years from an hour ago.
const CA_DAYS: u32 = 3650;

/// How long issued certificates are valid unless `--days` says otherwise.
const DEFAULT_DAYS: u32 = 90;

#[derive(Debug, clap::Args)]
#[command(after_long_help = LAYOUT)]
pub struct CertsArgs {
    /// The topology file; its `[tls]` table says where the files go.
    #[arg(long, default_value = "regions.toml")]
    config: PathBuf,
    /// How many days the issued certificates are valid, from an hour ago.
    #[arg(long, default_value_t = DEFAULT_DAYS, value_parser = clap::value_parser!(u32).range(1..=3650))]
    days: u32,
    /// Only this region's certificate (repeatable); default: every region.
    #[arg(long, value_name = "REGION")]
    region: Vec<String>,
    /// Replace the CA, and re-issue every region's certificate under it.
    ///
    /// Hosts and callers holding the old CA certificate refuse the new
    /// certificates (and the other way round) until they reload.
    #[arg(long, conflicts_with_all = ["region", "client"])]
    new_ca: bool,
    /// Issue a caller's certificate instead of the regions' (repeatable).
    ///
    /// Writes `client-NAME.crt` and `client-NAME.key` in the certificate
    /// folder, with SPIFFE ID `spiffe://<trust_domain>/wasmrpc/client/NAME`
    /// and client auth only.
    #[arg(long, value_name = "NAME", conflicts_with = "region")]
    client: Vec<String>,
}

/// The `[tls]` table of `regions.toml`, with the default layout.
macro_rules! tls_example {
    () => {
        "[tls]
ca = \"certs/ca.crt\"            # the cluster CA certificate; its key is ca.key beside it
trust_domain = \"wasmrpc.local\" # SPIFFE trust domain of host certificates
certs = \"certs\"                # folder of each region's <region>.crt and <region>.key"
    };
}

const LAYOUT: &str = concat!(
    "Files, from the [tls] table of the config file (paths relative to it):

",
    tls_example!(),
    "

  certs/ca.crt          the CA certificate, which every host and caller trusts
  certs/ca.key          its key: tls.ca with extension .key (mode 0600); both are made
                        when missing, and reused otherwise
  certs/REGION.crt      the certificate of the region's hosts: URI SAN
                        spiffe://wasmrpc.local/wasmrpc/region/REGION, the IPs of the
                        region's hosts, 127.0.0.1, ::1 and localhost; server and client auth
  certs/REGION.key      its private key (mode 0600)
  certs/client-NAME.*   a caller's certificate and key (--client NAME): URI SAN
                        spiffe://wasmrpc.local/wasmrpc/client/NAME, client auth only

Running it again keeps the CA and issues new host certificates under it: a rotation.
Files are replaced atomically, each key before its certificate.

These are development certificates (ECDSA P-256). In production, bring certificates from
your own CA, SPIRE or cert-manager, with the same SPIFFE IDs."
);

/// What `wasmrpc certs` reads of `regions.toml`; other keys are ignored.
#[derive(Debug, Deserialize)]
struct CertsConfig {
    #[serde(rename = "region", default)]
    regions: Vec<RegionHosts>,
    tls: Option<TlsFiles>,
}

#[derive(Debug, Deserialize)]
struct RegionHosts {
    name: String,
    hosts: Vec<String>,
}

/// The `[tls]` table.
#[derive(Debug, Deserialize)]
struct TlsFiles {
    /// `ca = "certs/ca.crt"`; its key is the same path with extension `.key`.
    ca: PathBuf,
    /// `trust_domain = "wasmrpc.local"`
    trust_domain: String,
    /// `certs = "certs"`; default: the CA's folder.
    certs: Option<PathBuf>,
}

pub fn run(args: CertsArgs) -> anyhow::Result<ExitCode> {
    let stdout = io::stdout();
    write_certs(&args, &mut stdout.lock())?;
    Ok(ExitCode::SUCCESS)
}

/// Issues what the hosts of `topology` lack, as `wasmrpc certs` does: the
/// CA and every region's certificate when the CA certificate is missing,
/// else the certificates of the regions whose certificate or key is. Prints
/// one line per file written to `out`, nothing when every file is there or
/// the topology has no `[tls]` table.
///
/// # Errors
///
/// As `wasmrpc certs`: a CA certificate whose key is missing, files that
/// cannot be written.
pub(super) fn issue_missing(topology: &Topology, out: &mut dyn Write) -> anyhow::Result<()> {
    let Some(tls) = &topology.tls else {
        return Ok(());
    };
    let region = if topology.base_dir.join(&tls.ca).exists() {
        let lacking: Vec<String> = topology
            .regions
            .iter()
            .filter(|region| {
                topology
                    .tls_files(&region.name, None, None)
                    .is_some_and(|files| !files.cert.exists() || !files.key.exists())
            })
            .map(|region| region.name.clone())
            .collect();
        if lacking.is_empty() {
            return Ok(());
        }
        lacking
    } else {
        Vec::new()
    };
    let args = CertsArgs {
        config: topology.path.clone(),
        days: DEFAULT_DAYS,
        region,
        new_ca: false,
        client: Vec::new(),
    };
    write_certs(&args, out)
}

/// Does what `args` say, printing one line per file written to `out`.
fn write_certs(args: &CertsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read `{}`", args.config.display()))?;
    let config: CertsConfig =
        toml::from_str(&text).with_context(|| format!("invalid `{}`", args.config.display()))?;
    let Some(tls) = config.tls else {
        bail!(
            "`{}` has no `[tls]` table; add one such as:\n\n{}",
            args.config.display(),
            tls_example!()
        );
    };
    check_trust_domain(&tls.trust_domain)?;
    let base_dir = args.config.parent().unwrap_or(Path::new(""));
    let ca_cert = base_dir.join(&tls.ca);
    let ca_key = ca_cert.with_extension("key");
    if ca_key == ca_cert {
        bail!(
            "tls.ca `{}` must not end in `.key`: that is its key's name",
            tls.ca.display()
        );
    }
    let certs = match &tls.certs {
        Some(folder) => base_dir.join(folder),
        None => ca_cert.parent().map(Path::to_path_buf).unwrap_or_default(),
    };

    let regions = selected_regions(&config.regions, &args.region, &args.config)?;
    for name in &args.client {
        check_client_name(name)?;
    }

    let ca = ca(&ca_cert, &ca_key, &tls.trust_domain, args.new_ca, out)?;
    std::fs::create_dir_all(&certs)
        .with_context(|| format!("cannot create the folder `{}`", certs.display()))?;
    if args.client.is_empty() {
        for region in regions {
            let mut ips: Vec<IpAddr> = Vec::with_capacity(region.hosts.len());
            for host in &region.hosts {
                let addr: SocketAddr = host.parse().with_context(|| {
                    format!(
                        "region `{}`: host `{host}` is not an IP:port address",
                        region.name
                    )
                })?;
                ips.push(addr.ip());
            }
            let leaf = Leaf::host(&tls.trust_domain, &region.name, &ips, args.days);
            let issued = ca
                .issue(&leaf)
                .with_context(|| format!("cannot issue the certificate of `{}`", region.name))?;
            write_pair(&certs, &region.name, &issued, &leaf, out)?;
        }
    }
    for name in &args.client {
        let leaf = Leaf::client(&tls.trust_domain, name, args.days);
        let issued = ca
            .issue(&leaf)
            .with_context(|| format!("cannot issue the certificate of client `{name}`"))?;
        write_pair(&certs, &format!("client-{name}"), &issued, &leaf, out)?;
    }
    Ok(())
}

/// The regions named by `--region`, or every region of the file.
fn selected_regions<'a>(
    regions: &'a [RegionHosts],
    names: &[String],
    config: &Path,
) -> anyhow::Result<Vec<&'a RegionHosts>> {
    for region in regions {
        // The name becomes a file name and a SPIFFE ID path segment.
        check_region_name(&region.name)?;
    }
    if names.is_empty() {
        if regions.is_empty() {
            bail!(
                "`{}` defines no `[[region]]`: there is no certificate to issue",
                config.display()
            );
        }
        return Ok(regions.iter().collect());
    }
    names
        .iter()
        .map(|name| {
            regions.iter().find(|r| r.name == *name).with_context(|| {
                let known: Vec<String> = regions.iter().map(|r| format!("`{}`", r.name)).collect();
                format!(
                    "unknown region `{name}`; `{}` defines {}",
                    config.display(),
                    known.join(", ")
                )
            })
        })
        .collect()
}

/// The CA at `cert`/`key`, made (and written) when missing or `new`.
fn ca(
    cert: &Path,
    key: &Path,
    trust_domain: &str,
    new: bool,
    out: &mut dyn Write,
) -> anyhow::Result<DevCa> {
    let (has_cert, has_key) = (cert.exists(), key.exists());
    if !new && has_cert && has_key {
        let cert_pem = std::fs::read_to_string(cert)
            .with_context(|| format!("cannot read `{}`", cert.display()))?;
        let key_pem = std::fs::read_to_string(key)
            .with_context(|| format!("cannot read `{}`", key.display()))?;
        return DevCa::load(&cert_pem, &key_pem).with_context(|| {
            format!(
                "cannot use the CA `{}` with key `{}`; `--new-ca` replaces it",
                cert.display(),
                key.display()
            )
        });
    }
    if !new && (has_cert || has_key) {
        let (present, missing) = if has_cert { (cert, key) } else { (key, cert) };
        bail!(
            "`{}` exists without `{}`; restore it, or pass `--new-ca` to replace the CA",
            present.display(),
            missing.display()
        );
    }
    let now = SystemTime::now();
    let ca = DevCa::new(
        &format!("wasmrpc development CA ({trust_domain})"),
        now - Duration::from_secs(60 * 60),
        now + Duration::from_secs(24 * 60 * 60) * CA_DAYS,
    )?;
    if let Some(folder) = cert.parent() {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("cannot create the folder `{}`", folder.display()))?;
    }
    write_file(key, ca.key_pem().as_bytes(), 0o600)?;
    writeln!(out, "wrote {}", key.display())?;
    write_file(cert, ca.cert_pem().as_bytes(), 0o644)?;
    writeln!(
        out,
        "wrote {}: the CA, valid until {}",
        cert.display(),
        humantime::format_rfc3339_seconds(ca.not_after())
    )?;
    Ok(ca)
}

/// Writes `<folder>/<stem>.key`, then `<folder>/<stem>.crt`.
fn write_pair(
    folder: &Path,
    stem: &str,
    issued: &Issued,
    leaf: &Leaf,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let key = folder.join(format!("{stem}.key"));
    write_file(&key, issued.key_pem.as_bytes(), 0o600)?;
    writeln!(out, "wrote {}", key.display())?;
    let cert = folder.join(format!("{stem}.crt"));
    write_file(&cert, issued.cert_pem.as_bytes(), 0o644)?;
    writeln!(
        out,
        "wrote {}: {}, valid until {}",
        cert.display(),
        leaf.spiffe_id.as_deref().unwrap_or(&leaf.common_name),
        humantime::format_rfc3339_seconds(leaf.not_after)
    )?;
    Ok(())
}

/// Replaces `path` with `contents` atomically, the new file having `mode`.
pub(super) fn write_file(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let folder = match path.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("`{}` is not a file name", path.display()))?;
    let temp = folder.join(format!(
        ".{}.{:016x}.tmp",
        name.to_string_lossy(),
        fastrand::u64(..)
    ));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(error).with_context(|| format!("cannot write `{}`", path.display()));
    }
    Ok(())
}

fn check_region_name(name: &str) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        bail!("region name `{name}` must match [a-z0-9-]+");
    }
    Ok(())
}

/// A client name is a file name and a SPIFFE path segment.
fn check_client_name(name: &str) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !valid {
        bail!("client name `{name}` must match [A-Za-z0-9._-]+ and not start with `.`");
    }
    Ok(())
}

/// SPIFFE trust domains are lowercase letters, digits, `.`, `-` and `_`.
fn check_trust_domain(trust_domain: &str) -> anyhow::Result<()> {
    let valid = !trust_domain.is_empty()
        && trust_domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if !valid {
        bail!("tls.trust_domain `{trust_domain}` must match [a-z0-9._-]+");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::fs::PermissionsExt;

    use clap::Parser;
    use x509_parser::extensions::GeneralName;

    const TOPOLOGY: &str = r#"
[[region]]
name = "eu-west"
hosts = ["10.0.0.1:7101", "10.0.0.2:7101"]
plugins = "plugins/eu-west"

[[region]]
name = "us-east"
hosts = ["[fd00::5]:7201"]
plugins = "plugins/us-east"

[routes]
"billing.*" = ["us-east"]

[tls]
ca = "pki/ca.crt"
trust_domain = "wasmrpc.local"
certs = "certs"
"#;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: CertsArgs,
    }

    fn args(dir: &Path, extra: &[&str]) -> CertsArgs {
        let config = dir.join("regions.toml");
        let mut argv = vec!["certs", "--config", config.to_str().unwrap()];
        argv.extend(extra);
        Cli::try_parse_from(argv).unwrap().args
    }

    fn topology() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("regions.toml"), TOPOLOGY).unwrap();
        dir
    }

    /// Runs the command; returns its output with the folder shown as `DIR`
    /// and dates as `DATE`.
    fn run_in(dir: &Path, extra: &[&str]) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        write_certs(&args(dir, extra), &mut out)?;
        let out = String::from_utf8(out).unwrap();
        let dir = dir.to_str().unwrap();
        Ok(out
            .lines()
            .map(|line| {
                let line = line.replace(dir, "DIR");
                match line.rsplit_once(" until ") {
                    Some((head, _)) => format!("{head} until DATE"),
                    None => line,
                }
            })
            .collect())
    }

    fn read(dir: &Path, file: &str) -> String {
        std::fs::read_to_string(dir.join(file)).unwrap()
    }

    fn mode(dir: &Path, file: &str) -> u32 {
        std::fs::metadata(dir.join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    }

    /// The URI and IP SANs of a PEM certificate.
    fn sans(pem: &str) -> (Vec<String>, Vec<IpAddr>) {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let mut uris = Vec::new();
        let mut ips = Vec::new();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(uri) => uris.push(uri.to_string()),
                GeneralName::IPAddress(b) if b.len() == 4 => {
                    ips.push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()))
                }
                GeneralName::IPAddress(b) => {
                    ips.push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()))
                }
                _ => {}
            }
        }
        (uris, ips)
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|ip| ip.parse().unwrap()).collect()
    }

    #[test]
    fn the_first_run_makes_the_ca_and_a_certificate_per_region() {
        let dir = topology();
        let dir = dir.path();
        assert_eq!(
            run_in(dir, &[]).unwrap(),
            [
                "wrote DIR/pki/ca.key",
                "wrote DIR/pki/ca.crt: the CA, valid until DATE",
                "wrote DIR/certs/eu-west.key",
                "wrote DIR/certs/eu-west.crt: spiffe://wasmrpc.local/wasmrpc/region/eu-west, valid until DATE",
                "wrote DIR/certs/us-east.key",
                "wrote DIR/certs/us-east.crt: spiffe://wasmrpc.local/wasmrpc/region/us-east, valid until DATE",
            ]
        );
        assert_eq!(
            sans(&read(dir, "certs/eu-west.crt")),
            (
                vec!["spiffe://wasmrpc.local/wasmrpc/region/eu-west".to_owned()],
                ips(&["10.0.0.1", "10.0.0.2", "127.0.0.1", "::1"])
            )
        );
        assert_eq!(
            sans(&read(dir, "certs/us-east.crt")),
            (
                vec!["spiffe://wasmrpc.local/wasmrpc/region/us-east".to_owned()],
                ips(&["fd00::5", "127.0.0.1", "::1"])
            )
        );
        for key in ["pki/ca.key", "certs/eu-west.key", "certs/us-east.key"] {
            assert_eq!(mode(dir, key), 0o600, "{key}");
        }
        for cert in ["pki/ca.crt", "certs/eu-west.crt"] {
            assert_eq!(mode(dir, cert), 0o644, "{cert}");
        }
        // The CA on disk is the one that signed, and the key matches.
        let ca = DevCa::load(&read(dir, "pki/ca.crt"), &read(dir, "pki/ca.key")).unwrap();
        assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
        // No temporary file is left behind.
        let mut names: Vec<String> = std::fs::read_dir(dir.join("certs"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["eu-west.crt", "eu-west.key", "us-east.crt", "us-east.key"]
        );
    }

    #[test]
    fn a_second_run_keeps_the_ca_and_replaces_the_host_certificates() {
        let dir = topology();
        let dir = dir.path();
        run_in(dir, &[]).unwrap();
        let (ca_cert, ca_key) = (read(dir, "pki/ca.crt"), read(dir, "pki/ca.key"));
        let (old_cert, old_key) = (
            read(dir, "certs/eu-west.crt"),
            read(dir, "certs/eu-west.key"),
        );

        assert_eq!(
            run_in(dir, &["--region", "eu-west", "--days", "7"]).unwrap(),
            [
                "wrote DIR/certs/eu-west.key",
                "wrote DIR/certs/eu-west.crt: spiffe://wasmrpc.local/wasmrpc/region/eu-west, valid until DATE",
            ]
        );
        assert_eq!(read(dir, "pki/ca.crt"), ca_cert);
        assert_eq!(read(dir, "pki/ca.key"), ca_key);
        let new_cert = read(dir, "certs/eu-west.crt");
        assert_ne!(new_cert, old_cert);
        assert_ne!(read(dir, "certs/eu-west.key"), old_key);
        assert_eq!(mode(dir, "certs/eu-west.key"), 0o600);

        // The new certificate is signed by the kept CA, for 7 days.
        let (_, pem) = x509_parser::pem::parse_x509_pem(new_cert.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let (_, ca_pem) = x509_parser::pem::parse_x509_pem(ca_cert.as_bytes()).unwrap();
        let ca = ca_pem.parse_x509().unwrap();
        assert_eq!(cert.verify_signature(Some(ca.public_key())), Ok(()));
        let validity = cert.validity();
        assert_eq!(
            validity.not_after.timestamp() - validity.not_before.timestamp(),
            7 * 24 * 3600 + 3600
        );
    }

    #[test]
    fn new_ca_replaces_the_ca() {
        let dir = topology();
        let dir = dir.path();
        run_in(dir, &[]).unwrap();
        let old_ca = read(dir, "pki/ca.crt");
        assert_eq!(run_in(dir, &["--new-ca"]).unwrap().len(), 6);
        assert_ne!(read(dir, "pki/ca.crt"), old_ca);
    }

    #[test]
    fn a_client_certificate_names_the_caller() {
        let dir = topology();
        let dir = dir.path();
        run_in(dir, &[]).unwrap();
        assert_eq!(
            run_in(dir, &["--client", "alice"]).unwrap(),
            [
                "wrote DIR/certs/client-alice.key",
                "wrote DIR/certs/client-alice.crt: spiffe://wasmrpc.local/wasmrpc/client/alice, valid until DATE",
            ]
        );
        assert_eq!(
            sans(&read(dir, "certs/client-alice.crt")),
            (
                vec!["spiffe://wasmrpc.local/wasmrpc/client/alice".to_owned()],
                vec![]
            )
        );
        assert_eq!(mode(dir, "certs/client-alice.key"), 0o600);
    }

    #[test]
    fn a_ca_certificate_without_its_key_is_not_replaced() {
        let dir = topology();
        let dir = dir.path();
        run_in(dir, &[]).unwrap();
        std::fs::remove_file(dir.join("pki/ca.key")).unwrap();
        let err = run_in(dir, &[]).unwrap_err().to_string();
        let dir = dir.to_str().unwrap();
        assert_eq!(
            err,
            format!(
                "`{dir}/pki/ca.crt` exists without `{dir}/pki/ca.key`; restore it, or pass `--new-ca` to replace the CA"
            )
        );
    }

    #[test]
    fn an_unknown_region_is_refused_naming_the_known_ones() {
        let dir = topology();
        let err = run_in(dir.path(), &["--region", "ap-south"])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("unknown region `ap-south`; `")
                && err.ends_with("regions.toml` defines `eu-west`, `us-east`"),
            "{err}"
        );
        assert!(!dir.path().join("pki").exists());
    }

    #[test]
    fn a_file_without_tls_table_is_refused_with_an_example() {
        let dir = tempfile::tempdir().unwrap();
        let (topology, _) = TOPOLOGY.split_once("[tls]").unwrap();
        std::fs::write(dir.path().join("regions.toml"), topology).unwrap();
        let err = run_in(dir.path(), &[]).unwrap_err().to_string();
        assert!(
            err.ends_with(
                "regions.toml` has no `[tls]` table; add one such as:\n\n\
                 [tls]\n\
                 ca = \"certs/ca.crt\"            # the cluster CA certificate; its key is ca.key beside it\n\
                 trust_domain = \"wasmrpc.local\" # SPIFFE trust domain of host certificates\n\
                 certs = \"certs\"                # folder of each region's <region>.crt and <region>.key"
            ),
            "{err}"
        );
    }

    #[test]
    fn a_region_name_that_is_not_a_file_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let text = TOPOLOGY.replace("name = \"eu-west\"", "name = \"../eu-west\"");
        std::fs::write(dir.path().join("regions.toml"), text).unwrap();
        let err = run_in(dir.path(), &[]).unwrap_err().to_string();
        assert_eq!(err, "region name `../eu-west` must match [a-z0-9-]+");
    }

    #[test]
    fn flags_that_would_mix_cas_conflict() {
        for argv in [
            &["certs", "--new-ca", "--region", "a"][..],
            &["certs", "--new-ca", "--client", "a"],
            &["certs", "--client", "a", "--region", "b"],
        ] {
            let err = Cli::try_parse_from(argv).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{argv:?}"
            );
        }
    }

    /// Runs [`issue_missing`] on the topology in `dir`; returns its output
    /// as [`run_in`] does.
    fn issue_missing_in(dir: &Path) -> anyhow::Result<Vec<String>> {
        let topology = Topology::from_file(&dir.join("regions.toml")).unwrap();
        let mut out = Vec::new();
        issue_missing(&topology, &mut out)?;
        let out = String::from_utf8(out).unwrap();
        let dir = dir.to_str().unwrap();
        Ok(out
            .lines()
            .map(|line| {
                let line = line.replace(dir, "DIR");
                match line.rsplit_once(" until ") {
                    Some((head, _)) => format!("{head} until DATE"),
                    None => line,
                }
            })
            .collect())
    }

    #[test]
    fn issue_missing_makes_only_what_is_missing() {
        let dir = topology();
        let dir = dir.path();
        assert_eq!(
            issue_missing_in(dir).unwrap(),
            [
                "wrote DIR/pki/ca.key",
                "wrote DIR/pki/ca.crt: the CA, valid until DATE",
                "wrote DIR/certs/eu-west.key",
                "wrote DIR/certs/eu-west.crt: spiffe://wasmrpc.local/wasmrpc/region/eu-west, valid until DATE",
                "wrote DIR/certs/us-east.key",
                "wrote DIR/certs/us-east.crt: spiffe://wasmrpc.local/wasmrpc/region/us-east, valid until DATE",
            ]
        );
        assert!(issue_missing_in(dir).unwrap().is_empty());

        // A region without its key gets a new pair under the kept CA.
        let (ca, eu_west) = (read(dir, "pki/ca.crt"), read(dir, "certs/eu-west.crt"));
        std::fs::remove_file(dir.join("certs/us-east.key")).unwrap();
        assert_eq!(
            issue_missing_in(dir).unwrap(),
            [
                "wrote DIR/certs/us-east.key",
                "wrote DIR/certs/us-east.crt: spiffe://wasmrpc.local/wasmrpc/region/us-east, valid until DATE",
            ]
        );
        assert_eq!(read(dir, "pki/ca.crt"), ca);
        assert_eq!(read(dir, "certs/eu-west.crt"), eu_west);

        // A CA key without its certificate is not replaced behind one's back.
        std::fs::remove_file(dir.join("pki/ca.crt")).unwrap();
        let err = issue_missing_in(dir).unwrap_err().to_string();
        let shown = dir.to_str().unwrap();
        assert_eq!(
            err,
            format!(
                "`{shown}/pki/ca.key` exists without `{shown}/pki/ca.crt`; restore it, or pass `--new-ca` to replace the CA"
            )
        );
    }

    #[test]
    fn issue_missing_does_nothing_without_a_tls_table() {
        let dir = tempfile::tempdir().unwrap();
        let (topology, _) = TOPOLOGY.split_once("[tls]").unwrap();
        std::fs::write(dir.path().join("regions.toml"), topology).unwrap();
        assert!(issue_missing_in(dir.path()).unwrap().is_empty());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn without_a_certs_folder_the_certificates_go_beside_the_ca() {
        let dir = topology();
        let dir = dir.path();
        let text = TOPOLOGY.replace("certs = \"certs\"\n", "");
        std::fs::write(dir.join("regions.toml"), text).unwrap();
        let written = run_in(dir, &["--region", "us-east"]).unwrap();
        assert_eq!(
            written[2..],
            [
                "wrote DIR/pki/us-east.key",
                "wrote DIR/pki/us-east.crt: spiffe://wasmrpc.local/wasmrpc/region/us-east, valid until DATE",
            ]
        );
        // Where the hosts look for them.
        let topology = Topology::from_file(&dir.join("regions.toml")).unwrap();
        let files = topology.tls_files("us-east", None, None).unwrap();
        assert_eq!(files.cert, dir.join("pki/us-east.crt"));
        assert_eq!(
            issue_missing_in(dir).unwrap(),
            [
                "wrote DIR/pki/eu-west.key",
                "wrote DIR/pki/eu-west.crt: spiffe://wasmrpc.local/wasmrpc/region/eu-west, valid until DATE",
            ]
        );
    }
}
