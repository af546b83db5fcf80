//! Key pairs on disk (`NAME.crt`, `NAME.key`), made on first use, and
//! certificates parsed from what clients send.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// What went wrong with a key pair or a certificate.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("making a key pair: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{0}")]
    Invalid(String),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CertError {
    let context = context.into();
    move |source| CertError::Io { context, source }
}

/// Whether a key pair serves (a daemon) or identifies a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

/// A certificate with its private key, as PEM.
#[derive(Clone)]
pub struct KeyPair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("KeyPair")
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

impl KeyPair {
    /// A fresh self-signed pair: ECDSA P-384 (what LXD makes), valid from
    /// yesterday for ten years; `names` become the subject alternative
    /// names (addresses as IP entries) and the first one the common name.
    pub fn generate(role: Role, names: &[String]) -> Result<KeyPair, CertError> {
        let day = std::time::Duration::from_secs(86_400);
        Self::generate_until(role, names, std::time::SystemTime::now() + day * 3650)
    }

    /// As [`KeyPair::generate`], valid until `not_after` (a short-lived
    /// record, such as a web view session shown in the trust store).
    pub fn generate_until(
        role: Role,
        names: &[String],
        not_after: std::time::SystemTime,
    ) -> Result<KeyPair, CertError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Kante");
        if let Some(cn) = names.first() {
            dn.push(DnType::CommonName, cn.as_str());
        }
        params.distinguished_name = dn;
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName(n.clone().try_into()?)),
            })
            .collect::<Result<_, rcgen::Error>>()?;
        let now = std::time::SystemTime::now();
        let day = std::time::Duration::from_secs(86_400);
        params.not_before = (now - day).into();
        params.not_after = not_after.into();
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = match role {
            Role::Server => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Role::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        let cert = params.self_signed(&key)?;
        Ok(KeyPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The certificate's DER.
    pub fn cert_der(&self) -> Result<CertificateDer<'static>, CertError> {
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
            .map_err(|e| CertError::Invalid(format!("certificate PEM: {e}")))
    }

    /// The private key's DER.
    pub fn key_der(&self) -> Result<PrivateKeyDer<'static>, CertError> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| CertError::Invalid(format!("private key PEM: {e}")))
    }

    /// The certificate's fingerprint (empty if the PEM is unreadable).
    pub fn fingerprint(&self) -> String {
        self.cert_der()
            .map(|d| crate::fingerprint(&d))
            .unwrap_or_default()
    }
}

fn paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    )
}

/// `DIR/NAME.crt` and `DIR/NAME.key`: read if both exist, else made (the
/// key written `0600` before anything is in it, each file renamed into
/// place so a crash never leaves half a file). A pair that exists but does
/// not parse is an error, never silently replaced: clients pinned it.
pub fn load_or_create(
    dir: &Path,
    name: &str,
    role: Role,
    names: &[String],
) -> Result<KeyPair, CertError> {
    let (crt, key) = paths(dir, name);
    if crt.exists() && key.exists() {
        let pair = KeyPair {
            cert_pem: std::fs::read_to_string(&crt).map_err(io(crt.display().to_string()))?,
            key_pem: std::fs::read_to_string(&key).map_err(io(key.display().to_string()))?,
        };
        pair.cert_der()?;
        pair.key_der()?;
        return Ok(pair);
    }
    let pair = KeyPair::generate(role, names)?;
    write_new(&key, pair.key_pem.as_bytes(), 0o600)?;
    write_new(&crt, pair.cert_pem.as_bytes(), 0o644)?;
    Ok(pair)
}

fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<(), CertError> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let ctx = || path.display().to_string();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(ctx()))?;
    f.write_all(data).map_err(io(ctx()))?;
    f.sync_all().map_err(io(ctx()))?;
    std::fs::rename(&tmp, path).map_err(io(ctx()))
}

/// A certificate as a client sends it: PEM, or base64 of the DER (what
/// `lxc` and pylxd put in `POST /1.0/certificates`), or raw DER. Anything
/// that is not one X.509 certificate is refused.
pub fn parse_certificate(input: &[u8]) -> Result<CertificateDer<'static>, CertError> {
    let trimmed = input.trim_ascii();
    let der: Vec<u8> = if trimmed.starts_with(b"-----BEGIN") {
        CertificateDer::from_pem_slice(trimmed)
            .map_err(|e| CertError::Invalid(format!("not a PEM certificate: {e}")))?
            .to_vec()
    } else if trimmed.first() == Some(&0x30) {
        trimmed.to_vec()
    } else {
        decode_base64(trimmed)
            .ok_or_else(|| CertError::Invalid("certificate is neither PEM nor base64".into()))?
    };
    match x509_parser::parse_x509_certificate(&der) {
        Ok(([], _)) => Ok(CertificateDer::from(der)),
        Ok(_) => Err(CertError::Invalid(
            "trailing bytes after the certificate".into(),
        )),
        Err(e) => Err(CertError::Invalid(format!("not an X.509 certificate: {e}"))),
    }
}

/// A certificate's subject common name, if it has one.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// Standard base64 with padding (trust tokens are written so).
pub fn encode_base64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Standard base64 with padding, whitespace ignored.
pub fn decode_base64(s: &[u8]) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let clean: Vec<u8> = s
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if clean.is_empty() || !clean.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(clean.len() / 4 * 3);
    for chunk in clean.chunks(4) {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | val(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn b64(data: &[u8]) -> String {
        encode_base64(data)
    }

    #[test]
    fn base64_round_trips() {
        for data in [&b""[..], b"f", b"fo", b"foo", b"foob", b"\xff\x00\x10"] {
            let text = encode_base64(data);
            assert_eq!(text.len() % 4, 0);
            if !data.is_empty() {
                assert_eq!(decode_base64(text.as_bytes()).unwrap(), data);
            }
        }
        assert_eq!(encode_base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn a_pair_is_made_once_with_a_private_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["host1".to_string(), "192.0.2.7".to_string()];
        let a = load_or_create(dir.path(), "server", Role::Server, &names).unwrap();
        let mode = std::fs::metadata(dir.path().join("server.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = load_or_create(dir.path(), "server", Role::Server, &names).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().len(), 64);
        let der = a.cert_der().unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let sans = cert.subject_alternative_name().unwrap().unwrap();
        let text = format!("{:?}", sans.value.general_names);
        assert!(text.contains("host1"), "{text}");
        let days = (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp())
            / 86_400;
        assert!(days >= 3650, "valid {days} days");
    }

    #[test]
    fn an_unreadable_pair_is_an_error_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("server.crt"), "junk").unwrap();
        std::fs::write(dir.path().join("server.key"), "junk").unwrap();
        assert!(load_or_create(dir.path(), "server", Role::Server, &[]).is_err());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("server.crt")).unwrap(),
            "junk"
        );
    }

    #[test]
    fn certificates_parse_from_pem_der_and_base64_only() {
        let pair = KeyPair::generate(Role::Client, &["c".into()]).unwrap();
        let der = pair.cert_der().unwrap().to_vec();
        let fp = crate::fingerprint(&der);
        for input in [
            pair.cert_pem.clone().into_bytes(),
            der.clone(),
            b64(&der).into_bytes(),
        ] {
            let got = parse_certificate(&input).unwrap();
            assert_eq!(crate::fingerprint(&got), fp);
        }
        for bad in [
            &b"hello"[..],
            b"",
            b"-----BEGIN CERTIFICATE-----\nxx\n",
            b"MIIB",
        ] {
            assert!(parse_certificate(bad).is_err(), "{bad:?}");
        }
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(parse_certificate(&trailing).is_err());
    }
}
