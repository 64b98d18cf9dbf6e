//! Development certificates: a cluster CA and the certificates it issues to
//! hosts and callers, each naming its holder by a SPIFFE ID.
//!
//! A host of region `eu-west` holds a certificate whose URI SAN is
//! `spiffe://<trust-domain>/wasmrpc/region/eu-west`, chained to the cluster
//! CA; a caller's certificate names `spiffe://<trust-domain>/wasmrpc/client/<name>`.
//! Peers authenticate each other by that ID, not by a DNS name, so a host's
//! certificate keeps working when its address changes; its IP addresses and
//! `localhost` are in it too, for clients that check those.
//!
//! These are for development and tests (`wasmrpc certs`, and the test suites'
//! throwaway CAs). In production, bring certificates with the same SPIFFE IDs
//! from your own CA, SPIRE or cert-manager. Every key is ECDSA P-256.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use time::OffsetDateTime;

/// Why a certificate cannot be made or a CA cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot generate an ECDSA P-256 key")]
    GenerateKey(#[source] rcgen::Error),
    #[error("cannot sign the certificate of `{subject}`")]
    Sign {
        subject: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("the CA certificate is not a PEM X.509 certificate: {0}")]
    BadCaCert(String),
    #[error("the CA certificate is not a CA (its basic constraints do not say `CA:TRUE`)")]
    NotACa,
    #[error("the CA key is not a PEM PKCS#8 private key")]
    BadCaKey(#[source] rcgen::Error),
    #[error("the CA key does not belong to the CA certificate")]
    CaKeyMismatch,
    #[error("`{value}` is not a valid {kind} (ASCII only)")]
    BadName { kind: &'static str, value: String },
    #[error("{time} cannot be written in a certificate")]
    TimeOutOfRange { time: String },
    #[error(
        "certificate `{subject}`: `not_after` ({not_after}) is not after `not_before` ({not_before})"
    )]
    EmptyValidity {
        subject: String,
        not_before: String,
        not_after: String,
    },
    #[error(
        "certificate `{subject}` would be valid until {not_after}, after its CA expires ({ca_not_after})"
    )]
    OutlivesCa {
        subject: String,
        not_after: String,
        ca_not_after: String,
    },
}

/// A certificate authority that issues [`Leaf`] certificates: its
/// certificate, its key, and the signer made of them.
pub struct DevCa {
    cert_pem: String,
    key_pem: String,
    not_after: SystemTime,
    issuer: Issuer<'static, KeyPair>,
}

/// What a certificate should say; [`DevCa::issue`] turns it into one.
///
/// [`Leaf::host`] and [`Leaf::client`] make the two kinds wasmrpc uses;
/// tests change the fields to make certificates a peer must refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// The subject's common name; informational, peers do not check it.
    pub common_name: String,
    /// The URI SAN: the SPIFFE ID peers authenticate.
    pub spiffe_id: Option<String>,
    /// DNS name SANs.
    pub dns_names: Vec<String>,
    /// IP address SANs.
    pub ips: Vec<IpAddr>,
    /// Start of validity (stored to the second).
    pub not_before: SystemTime,
    /// End of validity (stored to the second).
    pub not_after: SystemTime,
    /// Extended key usage `serverAuth`: it may serve TLS.
    pub server: bool,
    /// Extended key usage `clientAuth`: it may dial with TLS.
    pub client: bool,
}

/// A certificate and its private key, both PEM (the key PKCS#8).
#[derive(Clone, PartialEq, Eq)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// How far before now a certificate starts to be valid, so that a peer
/// whose clock is somewhat behind accepts it at once.
const BACKDATE: Duration = Duration::from_secs(60 * 60);

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// The SPIFFE ID of the hosts of `region`:
/// `spiffe://{trust_domain}/wasmrpc/region/{region}`.
pub fn region_spiffe_id(trust_domain: &str, region: &str) -> String {
    format!("spiffe://{trust_domain}/wasmrpc/region/{region}")
}

/// The SPIFFE ID of a caller called `name`:
/// `spiffe://{trust_domain}/wasmrpc/client/{name}`.
pub fn client_spiffe_id(trust_domain: &str, name: &str) -> String {
    format!("spiffe://{trust_domain}/wasmrpc/client/{name}")
}

/// The region a SPIFFE ID names, if it is
/// `spiffe://{trust_domain}/wasmrpc/region/{region}` exactly, with a region
/// name as `regions.toml` allows it (`[a-z0-9-]+`).
///
/// Anything else is `None`: another trust domain, a client's ID, a further
/// path segment, a query, a trailing slash, different case.
pub fn region_of_spiffe_id<'a>(id: &'a str, trust_domain: &str) -> Option<&'a str> {
    if trust_domain.is_empty() {
        return None;
    }
    let region = id
        .strip_prefix("spiffe://")?
        .strip_prefix(trust_domain)?
        .strip_prefix("/wasmrpc/region/")?;
    let valid = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    valid.then_some(region)
}

impl DevCa {
    /// A new self-signed CA called `common_name`, valid from `not_before` to
    /// `not_after`, with a fresh key. It may sign end-entity certificates
    /// only (path length 0).
    ///
    /// # Errors
    ///
    /// [`CertError::EmptyValidity`] or [`CertError::TimeOutOfRange`] for bad
    /// dates, [`CertError::BadName`] for a non-ASCII name, or rcgen's failure
    /// to make the key or the certificate.
    pub fn new(
        common_name: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<DevCa, CertError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name)?;
        (params.not_before, params.not_after) = validity(common_name, not_before, not_after)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = new_key()?;
        let cert = params.self_signed(&key).map_err(|source| CertError::Sign {
            subject: common_name.to_owned(),
            source,
        })?;
        Ok(DevCa {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_after: whole_seconds(not_after),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA of a certificate and its key, both PEM, as [`DevCa::cert_pem`]
    /// and [`DevCa::key_pem`] wrote them, to issue more certificates under
    /// the same CA.
    ///
    /// # Errors
    ///
    /// [`CertError::BadCaCert`], [`CertError::NotACa`], [`CertError::BadCaKey`],
    /// or [`CertError::CaKeyMismatch`] when the key is not the certificate's.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<DevCa, CertError> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| CertError::BadCaCert(e.to_string()))?;
        let cert = pem
            .parse_x509()
            .map_err(|e| CertError::BadCaCert(e.to_string()))?;
        if !cert.is_ca() {
            return Err(CertError::NotACa);
        }
        let key = KeyPair::from_pem(key_pem).map_err(CertError::BadCaKey)?;
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(CertError::CaKeyMismatch);
        }
        let not_after = cert.validity().not_after.timestamp();
        let not_after = UNIX_EPOCH
            + Duration::from_secs(u64::try_from(not_after).map_err(|_| {
                CertError::BadCaCert(format!("it expired before 1970 ({not_after})"))
            })?);
        let issuer = Issuer::from_ca_cert_der(&pem.contents.clone().into(), key)
            .map_err(|e| CertError::BadCaCert(e.to_string()))?;
        Ok(DevCa {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            not_after,
            issuer,
        })
    }

    /// The CA's certificate (PEM): what peers trust.
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// The CA's private key (PEM, PKCS#8): keep it to issue more
    /// certificates, and out of reach of everyone else.
    pub fn key_pem(&self) -> String {
        self.key_pem.clone()
    }

    /// The end of the CA's validity.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// A certificate saying what `leaf` says, with a fresh key, signed by
    /// this CA. It is never a CA itself.
    ///
    /// # Errors
    ///
    /// [`CertError::BadName`] for a non-ASCII name,
    /// [`CertError::EmptyValidity`] or [`CertError::TimeOutOfRange`] for bad
    /// dates, [`CertError::OutlivesCa`] when it would still be valid after
    /// the CA expires (peers would refuse it from then on).
    pub fn issue(&self, leaf: &Leaf) -> Result<Issued, CertError> {
        let subject = &leaf.common_name;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(subject)?;
        (params.not_before, params.not_after) = validity(subject, leaf.not_before, leaf.not_after)?;
        if whole_seconds(leaf.not_after) > self.not_after {
            return Err(CertError::OutlivesCa {
                subject: subject.clone(),
                not_after: rfc3339(leaf.not_after),
                ca_not_after: rfc3339(self.not_after),
            });
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if leaf.server {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if leaf.client {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        if let Some(id) = &leaf.spiffe_id {
            params.subject_alt_names.push(SanType::URI(ia5("URI", id)?));
        }
        for dns in &leaf.dns_names {
            params
                .subject_alt_names
                .push(SanType::DnsName(ia5("DNS name", dns)?));
        }
        params
            .subject_alt_names
            .extend(leaf.ips.iter().copied().map(SanType::IpAddress));
        let key = new_key()?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| CertError::Sign {
                subject: subject.clone(),
                source,
            })?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl Leaf {
    /// A host of `region`: SPIFFE ID
    /// `spiffe://{trust_domain}/wasmrpc/region/{region}`, the given IPs plus
    /// `127.0.0.1`, `::1` and DNS `localhost`, server and client auth (hosts
    /// dial each other with it), valid from an hour ago for `days`.
    pub fn host(trust_domain: &str, region: &str, ips: &[IpAddr], days: u32) -> Leaf {
        let mut all_ips: Vec<IpAddr> = Vec::with_capacity(ips.len() + 2);
        let loopback = [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ];
        for ip in ips.iter().chain(&loopback) {
            if !all_ips.contains(ip) {
                all_ips.push(*ip);
            }
        }
        let (not_before, not_after) = from_now(days);
        Leaf {
            common_name: format!("wasmrpc region {region}"),
            spiffe_id: Some(region_spiffe_id(trust_domain, region)),
            dns_names: vec!["localhost".to_owned()],
            ips: all_ips,
            not_before,
            not_after,
            server: true,
            client: true,
        }
    }

    /// A caller's certificate: SPIFFE ID
    /// `spiffe://{trust_domain}/wasmrpc/client/{name}`, client auth only,
    /// valid from an hour ago for `days`.
    pub fn client(trust_domain: &str, name: &str, days: u32) -> Leaf {
        let (not_before, not_after) = from_now(days);
        Leaf {
            common_name: format!("wasmrpc client {name}"),
            spiffe_id: Some(client_spiffe_id(trust_domain, name)),
            dns_names: Vec::new(),
            ips: Vec::new(),
            not_before,
            not_after,
            server: false,
            client: true,
        }
    }
}

impl fmt::Debug for DevCa {
    /// Leaves the key out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevCa")
            .field("cert_pem", &self.cert_pem)
            .field("not_after", &rfc3339(self.not_after))
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Issued {
    /// Leaves the key out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

fn new_key() -> Result<KeyPair, CertError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(CertError::GenerateKey)
}

fn name(common_name: &str) -> Result<DistinguishedName, CertError> {
    if !common_name.is_ascii() {
        return Err(CertError::BadName {
            kind: "common name",
            value: common_name.to_owned(),
        });
    }
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    Ok(name)
}

fn ia5(kind: &'static str, value: &str) -> Result<Ia5String, CertError> {
    Ia5String::try_from(value).map_err(|_| CertError::BadName {
        kind,
        value: value.to_owned(),
    })
}

/// `days` from an hour ago.
fn from_now(days: u32) -> (SystemTime, SystemTime) {
    let now = SystemTime::now();
    (now - BACKDATE, now + DAY * days)
}

fn validity(
    subject: &str,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<(OffsetDateTime, OffsetDateTime), CertError> {
    if whole_seconds(not_after) <= whole_seconds(not_before) {
        return Err(CertError::EmptyValidity {
            subject: subject.to_owned(),
            not_before: rfc3339(not_before),
            not_after: rfc3339(not_after),
        });
    }
    Ok((date_time(not_before)?, date_time(not_after)?))
}

/// `time` as a certificate stores it: whole seconds since 1970.
fn date_time(time: SystemTime) -> Result<OffsetDateTime, CertError> {
    let out_of_range = || CertError::TimeOutOfRange {
        time: rfc3339(time),
    };
    let seconds = match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).map_err(|_| out_of_range())?,
        Err(before) => -i64::try_from(before.duration().as_secs()).map_err(|_| out_of_range())?,
    };
    let date_time = OffsetDateTime::from_unix_timestamp(seconds).map_err(|_| out_of_range())?;
    // X.509 dates have four-digit years.
    if !(0..=9999).contains(&date_time.year()) {
        return Err(out_of_range());
    }
    Ok(date_time)
}

/// `time` without its fraction of a second, as a certificate keeps it.
fn whole_seconds(time: SystemTime) -> SystemTime {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => UNIX_EPOCH + Duration::from_secs(after.as_secs()),
        Err(_) => time,
    }
}

fn rfc3339(time: SystemTime) -> String {
    match time.duration_since(UNIX_EPOCH) {
        Ok(_) => humantime::format_rfc3339_seconds(time).to_string(),
        Err(before) => format!("{}s before 1970", before.duration().as_secs()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
    use webpki::{EndEntityCert, KeyUsage, anchor_from_trusted_cert};
    use x509_parser::extensions::GeneralName;

    const TRUST_DOMAIN: &str = "wasmrpc.local";

    fn ca() -> DevCa {
        let now = SystemTime::now();
        DevCa::new("test CA", now - DAY, now + DAY * 365).unwrap()
    }

    fn der(pem: &str) -> CertificateDer<'static> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        assert_eq!(pem.label, "CERTIFICATE");
        CertificateDer::from(pem.contents)
    }

    /// Verifies `cert` against `ca` as rustls would for `usage` at `at`.
    fn verify(
        ca: &DevCa,
        cert: &Issued,
        usage: KeyUsage,
        at: SystemTime,
    ) -> Result<(), webpki::Error> {
        let ca_der = der(&ca.cert_pem());
        let anchors = [anchor_from_trusted_cert(&ca_der).unwrap().to_owned()];
        let leaf_der = der(&cert.cert_pem);
        let leaf = EndEntityCert::try_from(&leaf_der).unwrap();
        leaf.verify_for_usage(
            &[webpki::ring::ECDSA_P256_SHA256],
            &anchors,
            &[],
            UnixTime::since_unix_epoch(at.duration_since(UNIX_EPOCH).unwrap()),
            usage,
            None,
            None,
        )
        .map(|_| ())
    }

    fn valid_for(cert: &Issued, name: &str) -> Result<(), webpki::Error> {
        let leaf_der = der(&cert.cert_pem);
        let leaf = EndEntityCert::try_from(&leaf_der).unwrap();
        leaf.verify_is_valid_for_subject_name(&ServerName::try_from(name).unwrap())
    }

    /// The subject alternative names, as strings: `uri:…`, `dns:…`, `ip:…`.
    fn sans(cert: &Issued) -> Vec<String> {
        let leaf_der = der(&cert.cert_pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&leaf_der).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        san.value
            .general_names
            .iter()
            .map(|name| match name {
                GeneralName::URI(uri) => format!("uri:{uri}"),
                GeneralName::DNSName(dns) => format!("dns:{dns}"),
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => IpAddr::from(<[u8; 4]>::try_from(*bytes).unwrap()),
                        16 => IpAddr::from(<[u8; 16]>::try_from(*bytes).unwrap()),
                        n => panic!("{n}-byte IP address"),
                    };
                    format!("ip:{ip}")
                }
                other => panic!("unexpected SAN {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_host_certificate_verifies_for_its_ips_and_localhost_and_names_its_region() {
        let ca = ca();
        let host_ip: IpAddr = "10.1.2.3".parse().unwrap();
        let cert = ca
            .issue(&Leaf::host(TRUST_DOMAIN, "eu-west", &[host_ip], 90))
            .unwrap();
        let now = SystemTime::now();
        assert_eq!(verify(&ca, &cert, KeyUsage::server_auth(), now), Ok(()));
        assert_eq!(verify(&ca, &cert, KeyUsage::client_auth(), now), Ok(()));
        for name in ["10.1.2.3", "127.0.0.1", "::1", "localhost"] {
            assert_eq!(valid_for(&cert, name), Ok(()), "{name}");
        }
        assert!(matches!(
            valid_for(&cert, "10.1.2.4"),
            Err(webpki::Error::CertNotValidForName(_))
        ));
        assert_eq!(
            sans(&cert),
            [
                "uri:spiffe://wasmrpc.local/wasmrpc/region/eu-west",
                "dns:localhost",
                "ip:10.1.2.3",
                "ip:127.0.0.1",
                "ip:::1",
            ]
        );
    }

    #[test]
    fn a_host_certificate_lists_each_ip_once() {
        let leaf = Leaf::host(TRUST_DOMAIN, "a", &["127.0.0.1".parse().unwrap()], 1);
        assert_eq!(
            leaf.ips,
            [
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            ]
        );
    }

    #[test]
    fn a_host_certificate_is_valid_from_an_hour_ago_for_its_days() {
        let before = SystemTime::now();
        let leaf = Leaf::host(TRUST_DOMAIN, "a", &[], 90);
        let after = SystemTime::now();
        assert!(leaf.not_before >= before - BACKDATE && leaf.not_before <= after - BACKDATE);
        assert_eq!(
            leaf.not_after.duration_since(leaf.not_before).unwrap(),
            BACKDATE + DAY * 90
        );
    }

    #[test]
    fn a_client_certificate_names_the_caller_and_serves_no_tls() {
        let ca = ca();
        let cert = ca.issue(&Leaf::client(TRUST_DOMAIN, "alice", 1)).unwrap();
        let now = SystemTime::now();
        assert_eq!(
            sans(&cert),
            ["uri:spiffe://wasmrpc.local/wasmrpc/client/alice"]
        );
        assert_eq!(verify(&ca, &cert, KeyUsage::client_auth(), now), Ok(()));
        assert!(matches!(
            verify(&ca, &cert, KeyUsage::server_auth(), now),
            Err(webpki::Error::RequiredEkuNotFoundContext(_))
        ));
    }

    #[test]
    fn a_certificate_of_another_ca_is_refused() {
        let now = SystemTime::now();
        let ours = ca();
        let theirs = DevCa::new("their CA", now - DAY, now + DAY).unwrap();
        let cert = theirs
            .issue(&Leaf::host(TRUST_DOMAIN, "eu-west", &[], 1))
            .unwrap();
        assert_eq!(
            verify(&ours, &cert, KeyUsage::server_auth(), now),
            Err(webpki::Error::UnknownIssuer)
        );
    }

    #[test]
    fn a_certificate_of_another_ca_with_the_same_name_is_refused() {
        // Two clusters' `wasmrpc certs` name their CAs alike; the signature
        // tells them apart.
        let ours = ca();
        let theirs = ca();
        let cert = theirs
            .issue(&Leaf::host(TRUST_DOMAIN, "eu-west", &[], 1))
            .unwrap();
        assert_eq!(
            verify(&ours, &cert, KeyUsage::server_auth(), SystemTime::now()),
            Err(webpki::Error::InvalidSignatureForPublicKey)
        );
    }

    #[test]
    fn an_expired_certificate_is_refused_as_expired() {
        let ca = ca();
        let mut leaf = Leaf::host(TRUST_DOMAIN, "eu-west", &[], 1);
        let now = SystemTime::now();
        leaf.not_before = now - DAY * 2;
        leaf.not_after = now - DAY;
        let cert = ca.issue(&leaf).unwrap();
        let not_after = leaf.not_after.duration_since(UNIX_EPOCH).unwrap().as_secs();
        let at = UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap());
        assert_eq!(
            verify(&ca, &cert, KeyUsage::server_auth(), now),
            Err(webpki::Error::CertExpired {
                time: at,
                not_after: UnixTime::since_unix_epoch(Duration::from_secs(not_after)),
            })
        );
    }

    #[test]
    fn a_loaded_ca_issues_certificates_that_the_same_ca_certificate_verifies() {
        let original = ca();
        let loaded = DevCa::load(&original.cert_pem(), &original.key_pem()).unwrap();
        assert_eq!(loaded.cert_pem(), original.cert_pem());
        assert_eq!(loaded.not_after(), whole_seconds(original.not_after()));
        let cert = loaded
            .issue(&Leaf::host(TRUST_DOMAIN, "eu-west", &[], 1))
            .unwrap();
        assert_eq!(
            verify(&original, &cert, KeyUsage::server_auth(), SystemTime::now()),
            Ok(())
        );
    }

    #[test]
    fn a_ca_key_of_another_ca_is_refused() {
        let err = DevCa::load(&ca().cert_pem(), &ca().key_pem()).unwrap_err();
        assert!(matches!(err, CertError::CaKeyMismatch), "{err:?}");
        assert_eq!(
            err.to_string(),
            "the CA key does not belong to the CA certificate"
        );
    }

    #[test]
    fn a_leaf_certificate_cannot_be_loaded_as_a_ca() {
        let ca = ca();
        let leaf = ca.issue(&Leaf::host(TRUST_DOMAIN, "a", &[], 1)).unwrap();
        let err = DevCa::load(&leaf.cert_pem, &leaf.key_pem).unwrap_err();
        assert!(matches!(err, CertError::NotACa), "{err:?}");
    }

    #[test]
    fn a_certificate_outliving_its_ca_is_refused() {
        let now = SystemTime::now();
        let ca = DevCa::new("short CA", now - DAY, now + DAY).unwrap();
        let err = ca
            .issue(&Leaf::host(TRUST_DOMAIN, "a", &[], 2))
            .unwrap_err();
        assert!(matches!(err, CertError::OutlivesCa { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("certificate `wasmrpc region a` would be valid until "),
            "{err}"
        );
    }

    #[test]
    fn an_empty_validity_is_refused() {
        let ca = ca();
        let mut leaf = Leaf::client(TRUST_DOMAIN, "alice", 1);
        leaf.not_after = leaf.not_before;
        let err = ca.issue(&leaf).unwrap_err();
        assert!(matches!(err, CertError::EmptyValidity { .. }), "{err:?}");
    }

    #[test]
    fn region_spiffe_ids_round_trip() {
        let id = region_spiffe_id(TRUST_DOMAIN, "eu-west");
        assert_eq!(id, "spiffe://wasmrpc.local/wasmrpc/region/eu-west");
        assert_eq!(region_of_spiffe_id(&id, TRUST_DOMAIN), Some("eu-west"));
    }

    #[test]
    fn only_an_exact_region_id_of_the_trust_domain_names_a_region() {
        for id in [
            "spiffe://other.local/wasmrpc/region/eu-west",
            "spiffe://wasmrpc.local.evil/wasmrpc/region/eu-west",
            "spiffe://wasmrpc.localx/wasmrpc/region/eu-west",
            "spiffe://wasmrpc.local/wasmrpc/region/eu-west/extra",
            "spiffe://wasmrpc.local/wasmrpc/region/eu-west/",
            "spiffe://wasmrpc.local/wasmrpc/region/",
            "spiffe://wasmrpc.local/wasmrpc/region",
            "spiffe://wasmrpc.local/wasmrpc/client/alice",
            "spiffe://wasmrpc.local/other/region/eu-west",
            "spiffe://wasmrpc.local/wasmrpc/region/eu-west?x=1",
            "spiffe://wasmrpc.local/wasmrpc/region/EU-WEST",
            "spiffe://wasmrpc.local/wasmrpc/region/..",
            "SPIFFE://wasmrpc.local/wasmrpc/region/eu-west",
            "https://wasmrpc.local/wasmrpc/region/eu-west",
            "spiffe://wasmrpc.local//wasmrpc/region/eu-west",
        ] {
            assert_eq!(region_of_spiffe_id(id, TRUST_DOMAIN), None, "{id}");
        }
        assert_eq!(
            region_of_spiffe_id("spiffe:///wasmrpc/region/eu-west", ""),
            None
        );
    }
}
