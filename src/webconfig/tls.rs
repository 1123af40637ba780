//! `tls_server_config` → a rustls `ServerConfig`, with the toolkit's rules (its
//! `web/tls_config.go`): cert/key from files or inline, the five `client_auth_type`s,
//! `client_allowed_sans`, versions, cipher suites, curves, server or client cipher order.
//!
//! Where rustls cannot do what Go can (TLS 1.0/1.1, CBC and RSA-key-exchange suites, P-521)
//! the file is refused with the field named rather than silently served differently.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{ring, CryptoProvider, SupportedKxGroup, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme, SupportedCipherSuite};

use crate::secret::Secret;

/// The raw `tls_server_config` (paths relative to the web config file).
#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    #[serde(default)]
    pub cert: String,
    #[serde(default, deserialize_with = "secret")]
    pub key: Option<Secret>,
    #[serde(default)]
    pub client_ca: String,
    #[serde(default)]
    pub cert_file: String,
    #[serde(default)]
    pub key_file: String,
    #[serde(default)]
    pub client_auth_type: String,
    #[serde(default)]
    pub client_ca_file: String,
    pub client_allowed_sans: Option<Vec<String>>,
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    #[serde(default)]
    pub curve_preferences: Vec<String>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    pub prefer_server_cipher_suites: Option<bool>,
}

fn secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    let s: Option<String> = serde::Deserialize::deserialize(d)?;
    Ok(s.map(Secret::new))
}

impl RawTls {
    /// TLS is on when a certificate, key, client CA or client auth type is set (the
    /// toolkit's `IsEnabled`); versions or suites alone leave it off.
    pub fn enabled(&self) -> bool {
        !self.cert.is_empty()
            || self.key.as_ref().is_some_and(|k| !k.expose().is_empty())
            || !self.client_ca.is_empty()
            || !self.cert_file.is_empty()
            || !self.key_file.is_empty()
            || !self.client_auth_type.is_empty()
            || !self.client_ca_file.is_empty()
    }

    /// The files this section reads (watched for changes).
    pub fn files(&self, base: &Path) -> Vec<PathBuf> {
        [&self.cert_file, &self.key_file, &self.client_ca_file]
            .into_iter()
            .filter(|f| !f.is_empty())
            .map(|f| resolve(base, f))
            .collect()
    }
}

/// Most bytes read from a certificate, key or CA file.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn read_pem_file(field: &str, path: &Path) -> Result<Vec<u8>, String> {
    let bytes = crate::util::read_at_most(path, MAX_PEM_BYTES).map_err(|e| {
        format!(
            "tls_server_config.{field}: cannot load {}: {e}",
            path.display()
        )
    })?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(format!(
            "tls_server_config.{field}: {} is larger than {MAX_PEM_BYTES} bytes",
            path.display()
        ));
    }
    Ok(bytes)
}

fn certs(field: &str, pem: &[u8], from: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls_server_config.{field}: cannot parse {from}: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "tls_server_config.{field}: no PEM certificate found in {from}"
        ));
    }
    Ok(certs)
}

/// Go's `tls.CipherSuites()` names, and the rustls suite for each one rustls has (`None`:
/// Go knows it, rustls does not implement it).
fn cipher_suite(name: &str) -> Option<Option<SupportedCipherSuite>> {
    use ring::cipher_suite as cs;
    Some(match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => {
            Some(cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
        }
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => {
            Some(cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)
        }
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            Some(cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256)
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => Some(cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => Some(cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            Some(cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256)
        }
        // TLS 1.3 suites: Go accepts the names and always enables all three; so does rustls.
        "TLS_AES_128_GCM_SHA256" => Some(cs::TLS13_AES_128_GCM_SHA256),
        "TLS_AES_256_GCM_SHA384" => Some(cs::TLS13_AES_256_GCM_SHA384),
        "TLS_CHACHA20_POLY1305_SHA256" => Some(cs::TLS13_CHACHA20_POLY1305_SHA256),
        // Go offers these; rustls implements neither CBC nor RSA key exchange.
        "TLS_RSA_WITH_AES_128_CBC_SHA"
        | "TLS_RSA_WITH_AES_256_CBC_SHA"
        | "TLS_RSA_WITH_AES_128_GCM_SHA256"
        | "TLS_RSA_WITH_AES_256_GCM_SHA384"
        | "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA" => None,
        _ => return None,
    })
}

/// Go's curve names (`CurveP256`, `CurveP384`, `CurveP521`, `X25519`, `X25519MLKEM768`).
fn curve(name: &str) -> Option<Option<&'static dyn SupportedKxGroup>> {
    Some(match name {
        "X25519" => Some(ring::kx_group::X25519),
        "CurveP256" => Some(ring::kx_group::SECP256R1),
        "CurveP384" => Some(ring::kx_group::SECP384R1),
        "CurveP521" | "X25519MLKEM768" => None,
        _ => return None,
    })
}

fn version(
    v: Option<&str>,
    default: &'static rustls::SupportedProtocolVersion,
    field: &str,
) -> Result<&'static rustls::SupportedProtocolVersion, String> {
    match v {
        None => Ok(default),
        Some("TLS12") => Ok(&rustls::version::TLS12),
        Some("TLS13") => Ok(&rustls::version::TLS13),
        Some(old @ ("TLS10" | "TLS11")) => Err(format!(
            "tls_server_config.{field}: {old} is not supported by this exporter (rustls speaks TLS 1.2 and 1.3 only); use TLS12 or TLS13"
        )),
        Some(other) => Err(format!(
            "tls_server_config.{field}: unknown TLS version {other:?}; use TLS12 or TLS13"
        )),
    }
}

/// How the server treats client certificates (Go's `tls.ClientAuthType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    None,
    Request,
    RequireAny,
    VerifyIfGiven,
    RequireAndVerify,
}

/// Builds the server config. `http2` decides the ALPN protocols and Go's HTTP/2 cipher rule.
pub fn server_config(t: &RawTls, base: &Path, http2: bool) -> Result<rustls::ServerConfig, String> {
    // Certificate and key: a file wins over inline text, as in the toolkit.
    let (cert_pem, cert_from) = if !t.cert_file.is_empty() {
        let p = resolve(base, &t.cert_file);
        (read_pem_file("cert_file", &p)?, p.display().to_string())
    } else if !t.cert.is_empty() {
        (t.cert.as_bytes().to_vec(), "the inline cert".to_string())
    } else {
        return Err("tls_server_config: missing one of cert or cert_file".to_string());
    };
    let cert_field = if t.cert_file.is_empty() {
        "cert"
    } else {
        "cert_file"
    };
    let inline_key = t.key.as_ref().filter(|k| !k.expose().is_empty());
    let key = if !t.key_file.is_empty() {
        let p = resolve(base, &t.key_file);
        let bytes = zeroize::Zeroizing::new(read_pem_file("key_file", &p)?);
        PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| {
            format!(
                "tls_server_config.key_file: no PEM private key could be read from {}",
                p.display()
            )
        })?
    } else if let Some(k) = inline_key {
        // The error never quotes the key's text.
        PrivateKeyDer::from_pem_slice(k.expose().as_bytes()).map_err(|_| {
            "tls_server_config.key: no PEM private key could be read from the inline key"
                .to_string()
        })?
    } else {
        return Err("tls_server_config: missing one of key or key_file".to_string());
    };
    let chain = certs(cert_field, &cert_pem, &cert_from)?;

    // Versions.
    let min = version(
        t.min_version.as_deref(),
        &rustls::version::TLS12,
        "min_version",
    )?;
    let max = version(
        t.max_version.as_deref(),
        &rustls::version::TLS13,
        "max_version",
    )?;
    let rank = |v: &rustls::SupportedProtocolVersion| u16::from(v.version);
    if rank(min) > rank(max) {
        return Err("tls_server_config: min_version is above max_version".to_string());
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [&rustls::version::TLS12, &rustls::version::TLS13]
            .into_iter()
            .filter(|v| rank(v) >= rank(min) && rank(v) <= rank(max))
            .collect();
    let tls12 = versions
        .iter()
        .any(|v| rank(v) == rank(&rustls::version::TLS12));

    // Cipher suites: TLS 1.3's are always on (as in Go); TLS 1.2's in the listed order.
    let mut provider: CryptoProvider = ring::default_provider();
    if !t.cipher_suites.is_empty() {
        let mut tls12_suites = Vec::new();
        for name in &t.cipher_suites {
            match cipher_suite(name) {
                None => {
                    return Err(format!(
                        "tls_server_config.cipher_suites: unknown cipher {name:?}"
                    ))
                }
                Some(None) => {
                    return Err(format!(
                        "tls_server_config.cipher_suites: {name} is not supported by this exporter's TLS library (rustls has no CBC or RSA-key-exchange suites); use the ECDHE GCM or CHACHA20 suites"
                    ))
                }
                Some(Some(s)) if s.tls13().is_none() => tls12_suites.push(s),
                Some(Some(_)) => {}
            }
        }
        if tls12 && http2 {
            // Go's net/http2 refuses to start in this case; so does the toolkit.
            let has_required = t.cipher_suites.iter().any(|n| {
                n == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
                    || n == "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
            });
            if !has_required {
                return Err("tls_server_config.cipher_suites: TLSConfig.CipherSuites is missing an HTTP/2-required AES_128_GCM_SHA256 cipher (need at least one of TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 or TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256); or set http_server_config.http2: false".to_string());
            }
        }
        if tls12 && tls12_suites.is_empty() {
            return Err("tls_server_config.cipher_suites: no TLS 1.2 suite listed; add one or set min_version: TLS13".to_string());
        }
        let mut suites: Vec<SupportedCipherSuite> = provider
            .cipher_suites
            .iter()
            .copied()
            .filter(|s| s.tls13().is_some())
            .collect();
        suites.extend(tls12_suites);
        provider.cipher_suites = suites;
    }
    if !t.curve_preferences.is_empty() {
        let mut groups = Vec::new();
        for name in &t.curve_preferences {
            match curve(name) {
                None => {
                    return Err(format!(
                        "tls_server_config.curve_preferences: unknown curve {name:?}"
                    ))
                }
                Some(None) => {
                    return Err(format!(
                        "tls_server_config.curve_preferences: {name} is not supported by this exporter's TLS library (rustls); use X25519, CurveP256 or CurveP384"
                    ))
                }
                Some(Some(g)) => groups.push(g),
            }
        }
        provider.kx_groups = groups;
    }
    let provider = Arc::new(provider);

    // Client authentication.
    let kind = match t.client_auth_type.as_str() {
        "" | "NoClientCert" => ClientAuth::None,
        "RequestClientCert" => ClientAuth::Request,
        "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAny,
        "VerifyClientCertIfGiven" => ClientAuth::VerifyIfGiven,
        "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerify,
        other => {
            return Err(format!(
                "tls_server_config.client_auth_type: invalid ClientAuth {other:?}; use NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
            ))
        }
    };
    if (!t.client_ca_file.is_empty() || !t.client_ca.is_empty()) && kind == ClientAuth::None {
        return Err("tls_server_config.client_ca_file: client CA's have been configured without a Client Auth Policy (set client_auth_type)".to_string());
    }
    let client_ca = if !t.client_ca_file.is_empty() {
        let p = resolve(base, &t.client_ca_file);
        let pem = read_pem_file("client_ca_file", &p)?;
        Some(certs("client_ca_file", &pem, &p.display().to_string())?)
    } else if !t.client_ca.is_empty() {
        Some(certs(
            "client_ca",
            t.client_ca.as_bytes(),
            "the inline client_ca",
        )?)
    } else {
        None
    };
    if t.client_allowed_sans.is_some()
        && !matches!(kind, ClientAuth::RequireAny | ClientAuth::RequireAndVerify)
    {
        return Err("tls_server_config.client_allowed_sans: client_allowed_sans requires client_auth_type to be one of RequireAnyClientCert or RequireAndVerifyClientCert".to_string());
    }
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls_server_config: {e}"))?;
    let builder = if kind == ClientAuth::None {
        builder.with_no_client_auth()
    } else {
        let verify = match kind {
            ClientAuth::VerifyIfGiven | ClientAuth::RequireAndVerify => {
                let mut roots = rustls::RootCertStore::empty();
                match client_ca {
                    Some(cas) => {
                        for ca in cas {
                            roots.add(ca).map_err(|e| {
                                format!("tls_server_config.client_ca_file: not a usable CA certificate: {e}")
                            })?;
                        }
                    }
                    // Go verifies against the system's roots when no CA is given; the
                    // exporter uses Mozilla's root list (webpki-roots) for that.
                    None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
                }
                let mut b = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    roots.into(),
                    provider.clone(),
                );
                if kind == ClientAuth::VerifyIfGiven {
                    b = b.allow_unauthenticated();
                }
                Some(
                    b.build()
                        .map_err(|e| format!("tls_server_config.client_ca_file: {e}"))?,
                )
            }
            _ => None,
        };
        builder.with_client_cert_verifier(Arc::new(ClientCerts {
            verify,
            mandatory: matches!(kind, ClientAuth::RequireAny | ClientAuth::RequireAndVerify),
            allowed_sans: t.client_allowed_sans.clone(),
            algorithms: provider.signature_verification_algorithms,
        }))
    };
    let key_field = if t.key_file.is_empty() {
        "key"
    } else {
        "key_file"
    };
    provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|_| {
            format!("tls_server_config.{key_field}: not a usable private key (RSA, ECDSA or Ed25519, PEM)")
        })?;
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        format!(
            "tls_server_config: the certificate ({cert_field}) and key do not fit together: {e}"
        )
    })?;
    config.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Client certificates as Go treats them: requested or required, verified against the
/// roots or not, and the leaf's SANs matched against `client_allowed_sans`.
#[derive(Debug)]
struct ClientCerts {
    verify: Option<Arc<dyn ClientCertVerifier>>,
    mandatory: bool,
    allowed_sans: Option<Vec<String>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for ClientCerts {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.verify.as_ref().map_or(&[], |v| v.root_hint_subjects())
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if let Some(v) = &self.verify {
            v.verify_client_cert(end_entity, intermediates, now)?;
        }
        if let Some(allowed) = &self.allowed_sans {
            let sans = subject_alt_names(end_entity).map_err(|_| {
                rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
            })?;
            if !sans.iter().any(|s| allowed.contains(s)) {
                tracing::debug!(
                    found = ?sans,
                    "client certificate refused: none of its SANs is in client_allowed_sans"
                );
                return Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ApplicationVerificationFailure,
                ));
            }
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// One DER element: (tag, contents, rest).
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&len0, rest) = rest.split_first()?;
    let (len, rest) = if len0 < 0x80 {
        (usize::from(len0), rest)
    } else {
        let n = usize::from(len0 & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |a, &b| (a << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The subject alternative names of a certificate as Go renders them: DNS names, e-mail
/// addresses, IP addresses (`192.0.2.7`, `2001:db8::1`) and URIs.
pub fn subject_alt_names(cert: &[u8]) -> Result<Vec<String>, ()> {
    const SAN_OID: &[u8] = &[0x55, 0x1d, 0x11]; // 2.5.29.17
    let (_, certificate, _) = der(cert).ok_or(())?;
    let (_, mut tbs, _) = der(certificate).ok_or(())?;
    let mut out = Vec::new();
    while !tbs.is_empty() {
        let (tag, content, rest) = der(tbs).ok_or(())?;
        tbs = rest;
        if tag != 0xa3 {
            continue; // extensions are [3]
        }
        let (_, mut exts, _) = der(content).ok_or(())?;
        while !exts.is_empty() {
            let (_, ext, rest) = der(exts).ok_or(())?;
            exts = rest;
            let (_, oid, mut ext_rest) = der(ext).ok_or(())?;
            if oid != SAN_OID {
                continue;
            }
            let (mut tag, mut value, r) = der(ext_rest).ok_or(())?;
            if tag == 0x01 {
                // critical BOOLEAN
                ext_rest = r;
                (tag, value, _) = der(ext_rest).ok_or(())?;
            }
            if tag != 0x04 {
                return Err(());
            }
            let (_, mut names, _) = der(value).ok_or(())?;
            while !names.is_empty() {
                let (tag, name, rest) = der(names).ok_or(())?;
                names = rest;
                match tag {
                    0x81 | 0x82 | 0x86 => {
                        out.push(String::from_utf8_lossy(name).into_owned());
                    }
                    0x87 => {
                        if let Ok(v4) = <[u8; 4]>::try_from(name) {
                            out.push(std::net::Ipv4Addr::from(v4).to_string());
                        } else if let Ok(v6) = <[u8; 16]>::try_from(name) {
                            out.push(std::net::Ipv6Addr::from(v6).to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sans_are_read_as_go_renders_them() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![
            rcgen::SanType::DnsName("scraper.example".try_into().unwrap()),
            rcgen::SanType::IpAddress("192.0.2.7".parse().unwrap()),
            rcgen::SanType::IpAddress("2001:db8::1".parse().unwrap()),
            rcgen::SanType::Rfc822Name("prom@example.org".try_into().unwrap()),
            rcgen::SanType::URI("spiffe://c/ns/m".try_into().unwrap()),
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            subject_alt_names(cert.der()).unwrap(),
            [
                "scraper.example",
                "192.0.2.7",
                "2001:db8::1",
                "prom@example.org",
                "spiffe://c/ns/m"
            ]
        );
        assert!(subject_alt_names(b"\x30\x05junk").is_err());
    }

    #[test]
    fn every_go_cipher_suite_name_is_known() {
        // tls.CipherSuites() of Go 1.22+.
        for name in [
            "TLS_RSA_WITH_AES_128_CBC_SHA",
            "TLS_RSA_WITH_AES_256_CBC_SHA",
            "TLS_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_AES_128_GCM_SHA256",
            "TLS_AES_256_GCM_SHA384",
            "TLS_CHACHA20_POLY1305_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
            "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
            "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
            "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        ] {
            assert!(cipher_suite(name).is_some(), "{name}");
        }
        assert!(
            cipher_suite("TLS_RSA_WITH_RC4_128_SHA").is_none(),
            "insecure: unknown, as in Go"
        );
    }
}
