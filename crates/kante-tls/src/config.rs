//! rustls configurations: the daemon's listener (client certificates asked
//! for, never required, any self-signed one accepted at the TLS layer: the
//! daemon trusts by fingerprint per request) and a client that trusts one
//! pinned server certificate, or on first contact records the one shown.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, Error, ServerConfig,
    SignatureScheme, SupportedProtocolVersion,
};

use crate::keypair::{CertError, KeyPair};

/// TLS 1.3 first, 1.2 accepted (lxc 5.0.2 and Python clients use 1.2).
pub static TLS_VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// *ring*'s provider: it builds with only a C compiler (aws-lc needs more
/// of the build host) and has what LXD's clients negotiate; rustls marks it
/// deprecated only for lacking post-quantum key exchange.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls(e: Error) -> CertError {
    CertError::Invalid(format!("TLS configuration: {e}"))
}

/// Checks handshake signatures with the provider's algorithms; shared by
/// both verifiers.
#[derive(Debug)]
struct Signatures(Arc<CryptoProvider>);

impl Signatures {
    fn tls12(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn tls13(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Asks for a client certificate, requires none, and accepts any that is a
/// parseable certificate whose holder proves its key (the handshake
/// signature); whether it is trusted is the daemon's decision.
#[derive(Debug)]
struct AnyClient(Signatures);

impl ClientCertVerifier for AnyClient {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        match x509_parser::parse_x509_certificate(end_entity) {
            Ok(_) => Ok(ClientCertVerified::assertion()),
            Err(_) => Err(Error::InvalidCertificate(CertificateError::BadEncoding)),
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.tls12(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.tls13(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.schemes()
    }
}

/// The daemon's listener configuration for its key pair; HTTP/1.1 only.
pub fn server_config(pair: &KeyPair) -> Result<ServerConfig, CertError> {
    let p = provider();
    let mut cfg = ServerConfig::builder_with_provider(p.clone())
        .with_protocol_versions(TLS_VERSIONS)
        .map_err(tls)?
        .with_client_cert_verifier(Arc::new(AnyClient(Signatures(p))))
        .with_single_cert(vec![pair.cert_der()?], pair.key_der()?)
        .map_err(tls)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// The server certificate a client trusts: `expected` is the pinned
/// fingerprint, or `None` on first contact, when any certificate is
/// accepted and only recorded (the caller shows it and pins it). The
/// certificate the server presented is kept in `seen` either way, so a
/// refusal can show both fingerprints.
#[derive(Debug, Clone, Default)]
pub struct ServerPin {
    pub expected: Option<String>,
    pub seen: Arc<Mutex<Option<CertificateDer<'static>>>>,
}

impl ServerPin {
    /// The fingerprint of the certificate the server showed, if any.
    pub fn seen_fingerprint(&self) -> Option<String> {
        self.seen
            .lock()
            .ok()?
            .as_ref()
            .map(|c| crate::fingerprint(c))
    }
}

#[derive(Debug)]
struct Pinned(ServerPin, Signatures);

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if let Ok(mut seen) = self.0.seen.lock() {
            *seen = Some(end_entity.clone().into_owned());
        }
        match &self.0.expected {
            None => Ok(ServerCertVerified::assertion()),
            Some(fp) if *fp == crate::fingerprint(end_entity) => {
                Ok(ServerCertVerified::assertion())
            }
            Some(_) => Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.1.tls12(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.1.tls13(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.1.schemes()
    }
}

/// A client configuration that trusts the server `pin` names and shows
/// `identity` (the client's own pair) when asked for a certificate.
pub fn client_config(
    pin: ServerPin,
    identity: Option<&KeyPair>,
) -> Result<ClientConfig, CertError> {
    let p = provider();
    let builder = ClientConfig::builder_with_provider(p.clone())
        .with_protocol_versions(TLS_VERSIONS)
        .map_err(tls)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned(pin, Signatures(p))));
    let mut cfg = match identity {
        Some(pair) => builder
            .with_client_auth_cert(vec![pair.cert_der()?], pair.key_der()?)
            .map_err(tls)?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Where the system's CA bundle is read from: `SSL_CERT_FILE` if set,
/// else Debian's `/etc/ssl/certs/ca-certificates.crt`.
pub fn system_ca_file() -> std::path::PathBuf {
    std::env::var_os("SSL_CERT_FILE")
        .map(Into::into)
        .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into())
}

/// A client configuration that verifies the server's certificate chain and
/// name against the CA certificates of `bundle` (PEM, as the system's
/// bundle is), for servers with a public certificate (an image server
/// without a pinned certificate). A bundle without one usable CA is an
/// error.
pub fn ca_client_config(bundle: &[u8]) -> Result<ClientConfig, CertError> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(bundle)
        .filter_map(|c| c.ok())
        .collect();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(CertError::Invalid(
            "no CA certificate found in the bundle".into(),
        ));
    }
    let p = provider();
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), p.clone())
            .build()
            .map_err(|e| CertError::Invalid(format!("TLS configuration: {e}")))?;
    let mut cfg = ClientConfig::builder_with_provider(p)
        .with_protocol_versions(TLS_VERSIONS)
        .map_err(tls)?
        .with_webpki_verifier(verifier)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keypair::Role;
    use rustls::{ClientConnection, ServerConnection};

    /// Runs a handshake in memory; returns the client certificate the
    /// server saw, or the error.
    fn handshake(
        server: &KeyPair,
        pin: ServerPin,
        client: Option<&KeyPair>,
    ) -> Result<Option<String>, Error> {
        let mut s = ServerConnection::new(Arc::new(server_config(server).unwrap()))?;
        let name = ServerName::try_from("kante").unwrap();
        let mut c = ClientConnection::new(Arc::new(client_config(pin, client).unwrap()), name)?;
        for _ in 0..10 {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            s.read_tls(&mut &buf[..]).unwrap();
            s.process_new_packets()?;
            let mut buf = Vec::new();
            s.write_tls(&mut buf).unwrap();
            c.read_tls(&mut &buf[..]).unwrap();
            c.process_new_packets()?;
            if !c.is_handshaking() && !s.is_handshaking() {
                break;
            }
        }
        assert!(!s.is_handshaking());
        Ok(s.peer_certificates()
            .and_then(|c| c.first())
            .map(|c| crate::fingerprint(c)))
    }

    #[test]
    fn a_client_certificate_is_optional_and_seen_when_shown() {
        let server = KeyPair::generate(Role::Server, &["s".into()]).unwrap();
        let client = KeyPair::generate(Role::Client, &["c".into()]).unwrap();
        let pin = ServerPin {
            expected: Some(server.fingerprint()),
            ..Default::default()
        };
        assert_eq!(handshake(&server, pin.clone(), None).unwrap(), None);
        assert_eq!(
            handshake(&server, pin, Some(&client)).unwrap(),
            Some(client.fingerprint())
        );
    }

    #[test]
    fn the_pin_decides_which_server_is_trusted() {
        let server = KeyPair::generate(Role::Server, &["s".into()]).unwrap();
        let other = KeyPair::generate(Role::Server, &["s".into()]).unwrap();
        // First contact: accepted, and the certificate is recorded.
        let first = ServerPin::default();
        handshake(&server, first.clone(), None).unwrap();
        assert_eq!(first.seen_fingerprint(), Some(server.fingerprint()));
        // Pinned to another one: refused, and what was seen is known.
        let wrong = ServerPin {
            expected: Some(other.fingerprint()),
            ..Default::default()
        };
        assert!(handshake(&server, wrong.clone(), None).is_err());
        assert_eq!(wrong.seen_fingerprint(), Some(server.fingerprint()));
    }

    #[test]
    fn a_ca_verified_client_refuses_a_self_signed_server() {
        assert!(ca_client_config(b"not a bundle").is_err());
        let server = KeyPair::generate(Role::Server, &["kante".into()]).unwrap();
        let other = KeyPair::generate(Role::Server, &["kante".into()]).unwrap();
        // A bundle holding some other certificate: the server's is not trusted.
        let cfg = ca_client_config(other.cert_pem.as_bytes()).unwrap();
        let mut s = ServerConnection::new(Arc::new(server_config(&server).unwrap())).unwrap();
        let name = ServerName::try_from("kante").unwrap();
        let mut c = ClientConnection::new(Arc::new(cfg), name).unwrap();
        let mut failed = false;
        for _ in 0..10 {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            s.read_tls(&mut &buf[..]).unwrap();
            s.process_new_packets().unwrap();
            let mut buf = Vec::new();
            s.write_tls(&mut buf).unwrap();
            c.read_tls(&mut &buf[..]).unwrap();
            if c.process_new_packets().is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "a server outside the bundle was trusted");
    }
}
