//! TLS settings of a client: whom it trusts, and the name it checks.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// The cryptography of every TLS connection: rustls's `ring` provider, TLS
/// 1.3 only.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The protocol versions offered and accepted: TLS 1.3 alone.
pub const VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// Why TLS settings cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("`{what}` holds no PEM certificate")]
    NoCertificate { what: String },
    #[error("`{what}`: {message}")]
    Invalid { what: String, message: String },
}

/// How a client connects with TLS: the configuration (trusted CAs, a client
/// certificate if any) and the name the host's certificate must carry.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub config: Arc<rustls::ClientConfig>,
    /// The name checked against the host's certificate; `None`: the IP
    /// address connected to.
    pub server_name: Option<ServerName<'static>>,
}

impl ClientTls {
    /// Trusts the CA certificates in `pem` (TLS 1.3, no client certificate).
    ///
    /// # Errors
    ///
    /// When `pem` holds no certificate or one rustls cannot use; `what`
    /// names the source in the message.
    pub fn from_ca_pem(pem: &[u8], what: &str) -> Result<ClientTls, TlsError> {
        let invalid = |message: String| TlsError::Invalid {
            what: what.to_owned(),
            message,
        };
        let roots = roots(pem, what)?;
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(|e| invalid(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(ClientTls {
            config: Arc::new(config),
            server_name: None,
        })
    }

    /// [`ClientTls::from_ca_pem`], presenting a certificate of this caller
    /// (`cert_pem`, leaf first, and its `key_pem`) to hosts that ask.
    ///
    /// # Errors
    ///
    /// As [`ClientTls::from_ca_pem`], or when the key does not fit the
    /// certificate.
    pub fn with_identity(
        ca_pem: &[u8],
        cert_pem: &[u8],
        key_pem: &[u8],
        what: &str,
    ) -> Result<ClientTls, TlsError> {
        let invalid = |message: String| TlsError::Invalid {
            what: what.to_owned(),
            message,
        };
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(e.to_string()))?;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| invalid(e.to_string()))?;
        let roots = roots(ca_pem, what)?;
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(|e| invalid(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(ClientTls {
            config: Arc::new(config),
            server_name: None,
        })
    }

    /// [`ClientTls::from_ca_pem`] with the CA certificates of a PEM file.
    ///
    /// # Errors
    ///
    /// When the file cannot be read, or as [`ClientTls::from_ca_pem`].
    pub fn from_ca_file(path: &Path) -> Result<ClientTls, TlsError> {
        let pem = std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        ClientTls::from_ca_pem(&pem, &path.display().to_string())
    }

    /// Checks the host's certificate for `name` (a DNS name or an IP
    /// address) instead of the address connected to.
    ///
    /// # Errors
    ///
    /// When `name` is neither.
    pub fn with_server_name(mut self, name: &str) -> Result<ClientTls, TlsError> {
        let parsed = ServerName::try_from(name.to_owned()).map_err(|e| TlsError::Invalid {
            what: name.to_owned(),
            message: e.to_string(),
        })?;
        self.server_name = Some(parsed);
        Ok(self)
    }
}

/// The CA certificates of `pem`, at least one.
fn roots(pem: &[u8], what: &str) -> Result<rustls::RootCertStore, TlsError> {
    let invalid = |message: String| TlsError::Invalid {
        what: what.to_owned(),
        message,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| invalid(e.to_string()))?;
        roots.add(cert).map_err(|e| invalid(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCertificate {
            what: what.to_owned(),
        });
    }
    Ok(roots)
}

/// Why a certificate was refused, in words; `trusted` names the CA it
/// should have been signed by. Shared by both sides of a handshake.
pub fn why_refused(cert: &rustls::CertificateError, trusted: &str) -> String {
    use rustls::CertificateError;
    match cert {
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "it has expired".to_owned()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "it is not valid yet".to_owned()
        }
        // A CA of the same name with another key: a bad signature.
        CertificateError::UnknownIssuer | CertificateError::BadSignature => {
            format!("it is not signed by {trusted}")
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "it does not name the address connected to".to_owned()
        }
        other => format!("{other:?}"),
    }
}

/// Says what a failed TLS handshake means for the side that connected.
pub fn describe_handshake_error(error: &std::io::Error) -> String {
    use rustls::Error;
    let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<Error>())
    else {
        return match error.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                "the host closed the connection during the TLS handshake".to_owned()
            }
            _ => format!("TLS handshake failed: {error}"),
        };
    };
    match tls {
        Error::InvalidCertificate(cert) => {
            let why = why_refused(cert, "a CA this side trusts");
            format!("the host's certificate was refused: {why}")
        }
        Error::InvalidMessage(_) => {
            "the host did not answer with TLS: is this a plaintext port?".to_owned()
        }
        Error::AlertReceived(alert) => {
            format!(
                "the host refused the TLS handshake (alert `{alert:?}`): does it require a client certificate, or trust another CA?"
            )
        }
        Error::General(message) => format!("the host's certificate was refused: {message}"),
        other => format!("TLS handshake failed: {other}"),
    }
}
