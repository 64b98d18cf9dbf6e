//! Real certificates for the tests: a CA and its host and caller
//! certificates, made with the host's own `wasmrpc::certs` in a folder.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use wasmrpc::certs::{DevCa, Issued, Leaf};
use wasmrpc::net::ClientTls;

/// The trust domain of the tests' certificates.
pub const TRUST_DOMAIN: &str = "wasmrpc.test";

/// A CA whose certificate is written to `<dir>/ca.crt`, issuing certificates
/// into `dir`.
pub struct Pki {
    pub ca: DevCa,
    dir: PathBuf,
}

impl Pki {
    /// A fresh CA, valid from a day ago for a year, written to
    /// `<dir>/ca.crt`.
    pub fn new(dir: &Path) -> Pki {
        let pki = Pki::unwritten(dir);
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(pki.ca_path(), pki.ca.cert_pem()).unwrap();
        pki
    }

    /// A fresh CA whose certificate is not written anywhere: one nobody
    /// trusts.
    pub fn unwritten(dir: &Path) -> Pki {
        let now = SystemTime::now();
        let ca = DevCa::new(
            "wasmrpc test CA",
            now - Duration::from_secs(86_400),
            now + Duration::from_secs(365 * 86_400),
        )
        .unwrap();
        Pki {
            ca,
            dir: dir.to_owned(),
        }
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The certificate of a host of `region`, for loopback.
    pub fn host_leaf(region: &str) -> Leaf {
        Leaf::host(TRUST_DOMAIN, region, &[IpAddr::from([127, 0, 0, 1])], 30)
    }

    /// Issues `leaf` and writes it as `<stem>.crt` and `<stem>.key`, each
    /// replaced whole (a temporary file renamed into place), the key first.
    pub fn write(&self, stem: &str, leaf: &Leaf) -> Issued {
        let issued = self.ca.issue(leaf).unwrap();
        replace(&self.dir.join(format!("{stem}.key")), &issued.key_pem);
        replace(&self.dir.join(format!("{stem}.crt")), &issued.cert_pem);
        issued
    }

    /// Issues each region's host certificate as `<region>.crt`/`.key`.
    pub fn write_regions(&self, regions: &[&str]) {
        for region in regions {
            self.write(region, &Pki::host_leaf(region));
        }
    }

    /// Settings of a caller trusting this CA.
    pub fn client_tls(&self) -> ClientTls {
        ClientTls::from_ca_pem(self.ca.cert_pem().as_bytes(), "test CA").unwrap()
    }
}

fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("part");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}
