//! A host's TLS: its certificate and key, the cluster CA, and the region
//! identity certificates carry, reloaded when the files change.
//!
//! Every host certificate names its region as a SPIFFE ID in a URI SAN,
//! `spiffe://<trust-domain>/wasmrpc/region/<region>`, and chains to the
//! cluster CA of `regions.toml`. The identity is what peers check:
//!
//! - A host accepting a connection asks for a client certificate but does
//!   not require one (applications connect without); a certificate that is
//!   presented must chain to the CA. The `peer` role is then granted only to
//!   a certificate naming a region of the topology, the region the peer's
//!   `hello` claims.
//! - A host dialing a peer checks that the certificate chains to the CA and
//!   names the region the topology puts that address in; the address itself
//!   need not appear in it (SPIRE and cert-manager issue SPIFFE IDs only).
//!
//! Applications check a host's certificate the usual way: chained to the CA
//! and valid for the name or IP address they connect to.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use wasmrpc_client::ClientTls;
use wasmrpc_client::tls::{VERSIONS, provider};

/// Where a host's TLS material lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The cluster CA certificate(s), PEM.
    pub ca: PathBuf,
    /// This host's certificate chain, leaf first, PEM.
    pub cert: PathBuf,
    /// This host's private key, PEM.
    pub key: PathBuf,
    /// The SPIFFE trust domain of region identities.
    pub trust_domain: String,
}

impl TlsFiles {
    /// The files to watch for changes.
    pub fn paths(&self) -> [&Path; 3] {
        [&self.ca, &self.cert, &self.key]
    }
}

/// Why TLS material cannot be used. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{path}` holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("`{path}` holds no PEM private key")]
    NoKey { path: PathBuf },
    #[error("`{path}`: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(
        "the certificate `{cert}` names no region of trust domain `{trust_domain}` (a URI SAN `spiffe://{trust_domain}/wasmrpc/region/<region>`)"
    )]
    NoRegion { cert: PathBuf, trust_domain: String },
    #[error("the certificate `{cert}` names region `{named}`, but this host serves `{serves}`")]
    OtherRegion {
        cert: PathBuf,
        named: String,
        serves: String,
    },
}

/// The region a certificate names: the one URI SAN of the form
/// `spiffe://<trust_domain>/wasmrpc/region/<region>`. `None` when there is
/// none, the certificate cannot be parsed, or it names several.
pub fn region_of(cert: &CertificateDer<'_>, trust_domain: &str) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let san = parsed.subject_alternative_name().ok()??;
    let mut regions = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => {
                crate::certs::region_of_spiffe_id(uri, trust_domain)
            }
            _ => None,
        });
    let region = regions.next()?;
    regions.next().is_none().then(|| region.to_owned())
}

/// Loaded TLS material: what new connections use.
pub struct TlsMaterial {
    /// For accepted connections.
    pub server: Arc<rustls::ServerConfig>,
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    trust_domain: String,
    /// The region this host's own certificate names.
    pub region: String,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("region", &self.region)
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

impl TlsMaterial {
    /// Reads and checks the files: the CA parses, the key matches the
    /// certificate, and the certificate names a region.
    ///
    /// # Errors
    ///
    /// [`TlsError`] naming the file at fault.
    pub fn load(files: &TlsFiles) -> Result<TlsMaterial, TlsError> {
        let invalid = |path: &Path, message: String| TlsError::Invalid {
            path: path.to_owned(),
            message,
        };
        let mut roots = RootCertStore::empty();
        for cert in certificates(&files.ca)? {
            roots
                .add(cert)
                .map_err(|e| invalid(&files.ca, e.to_string()))?;
        }
        let roots = Arc::new(roots);
        let chain = certificates(&files.cert)?;
        let key_pem = read(&files.key)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
                path: files.key.clone(),
            },
            other => invalid(&files.key, other.to_string()),
        })?;
        let region =
            region_of(&chain[0], &files.trust_domain).ok_or_else(|| TlsError::NoRegion {
                cert: files.cert.clone(),
                trust_domain: files.trust_domain.clone(),
            })?;
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| invalid(&files.ca, e.to_string()))?;
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(|e| invalid(&files.cert, e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| {
                invalid(
                    &files.key,
                    format!("does not fit `{}`: {e}", files.cert.display()),
                )
            })?;
        Ok(TlsMaterial {
            server: Arc::new(server),
            roots,
            chain,
            key,
            trust_domain: files.trust_domain.clone(),
            region,
        })
    }

    /// The region a verified peer certificate names (see [`region_of`]).
    pub fn region_of(&self, cert: &CertificateDer<'_>) -> Option<String> {
        region_of(cert, &self.trust_domain)
    }

    /// How to dial a host of `region`: mutual TLS with this host's
    /// certificate, accepting only a certificate that chains to the CA and
    /// names `region`.
    pub fn peer_client(&self, region: &str) -> ClientTls {
        let verifier = RegionVerifier {
            roots: self.roots.clone(),
            provider: provider(),
            trust_domain: self.trust_domain.clone(),
            region: region.to_owned(),
        };
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .expect("TLS 1.3 is supported by the ring provider")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .expect("the key was checked against the certificate when loaded");
        ClientTls {
            config: Arc::new(config),
            // Unused by the region check; rustls needs a name to send.
            server_name: Some(
                ServerName::try_from(format!("{region}.wasmrpc.invalid"))
                    .expect("a region name is a valid DNS label"),
            ),
        }
    }
}

/// Checks a dialed peer's certificate: chained to the cluster CA (and
/// within its validity), naming the region expected at that address.
#[derive(Debug)]
struct RegionVerifier {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
    trust_domain: String,
    region: String,
}

impl ServerCertVerifier for RegionVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        match region_of(end_entity, &self.trust_domain) {
            Some(region) if region == self.region => Ok(ServerCertVerified::assertion()),
            Some(region) => Err(rustls::Error::General(format!(
                "its certificate names region `{region}`, but the topology puts this address in `{}`",
                self.region
            ))),
            None => Err(rustls::Error::General(format!(
                "its certificate names no region of trust domain `{}`",
                self.trust_domain
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A host's TLS material as it is now: reloaded when its files change, used
/// by every new connection (open ones keep theirs).
pub struct Tls {
    files: TlsFiles,
    /// The region this host serves: its certificate must name it, now and
    /// after every reload.
    region: String,
    current: RwLock<Arc<TlsMaterial>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads the files of a host of `region`.
    ///
    /// # Errors
    ///
    /// As [`TlsMaterial::load`], or [`TlsError::OtherRegion`].
    pub fn load(files: TlsFiles, region: &str) -> Result<Tls, TlsError> {
        let material = TlsMaterial::load(&files)?;
        check_region(&material, &files, region)?;
        Ok(Tls {
            files,
            region: region.to_owned(),
            current: RwLock::new(Arc::new(material)),
        })
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The material new connections use.
    pub fn current(&self) -> Arc<TlsMaterial> {
        self.current.read().expect("tls lock").clone()
    }

    /// Reads the files again; on success new connections use them at once.
    /// On failure nothing changes.
    ///
    /// # Errors
    ///
    /// As [`TlsMaterial::load`].
    pub fn reload(&self) -> Result<(), TlsError> {
        let material = TlsMaterial::load(&self.files)?;
        check_region(&material, &self.files, &self.region)?;
        *self.current.write().expect("tls lock") = Arc::new(material);
        Ok(())
    }
}

/// A host's certificate must name the region it serves.
fn check_region(material: &TlsMaterial, files: &TlsFiles, region: &str) -> Result<(), TlsError> {
    if material.region == region {
        return Ok(());
    }
    Err(TlsError::OtherRegion {
        cert: files.cert.clone(),
        named: material.region.clone(),
        serves: region.to_owned(),
    })
}

/// Says why a TLS handshake with a caller failed, for this host's log.
pub fn describe_accept_error(error: &std::io::Error) -> String {
    use rustls::Error;
    let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<Error>())
    else {
        return error.to_string();
    };
    match tls {
        Error::InvalidCertificate(cert) => {
            let why = wasmrpc_client::tls::why_refused(cert, "the cluster CA");
            format!("the caller's certificate was refused: {why}")
        }
        Error::AlertReceived(alert) => format!(
            "the caller refused this host's certificate (alert `{alert:?}`): it trusts another CA, or expects another name"
        ),
        other => other.to_string(),
    }
}
