//! The cluster's certificate authority, made at `kante cluster enable`
//! (rcgen, ECDSA P-256): it signs each member's certificate, which etcd
//! shows on its client and peer ports and the member shows etcd as a
//! client (etcd runs with `--client-cert-auth` and
//! `--peer-client-cert-auth`: no certificate of this CA, no access).

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

/// A certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

fn err(e: rcgen::Error) -> String {
    format!("making the cluster's certificates: {e}")
}

/// The CA's parameters (the same at creation and when it signs).
fn ca_params() -> Result<CertificateParams, String> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kante cluster CA");
    params.distinguished_name = dn;
    Ok(params)
}

/// A new CA (`name` is the cluster's, for logs).
pub fn new_ca(name: &str) -> Result<Pem, String> {
    tracing::info!(cluster = name, "making the cluster's CA");
    let params = ca_params()?;
    let key = KeyPair::generate().map_err(err)?;
    let key_pem = key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(params, key).map_err(err)?;
    Ok(Pem {
        cert: ca.pem(),
        key: key_pem,
    })
}

/// A member's certificate, signed by `ca`, for `member` at `host` (an IP
/// address or name), good for serving and as a client (etcd's peers are
/// both).
pub fn issue(ca: &Pem, member: &str, host: &str) -> Result<Pem, String> {
    let ca_key = KeyPair::from_pem(&ca.key).map_err(err)?;
    if !ca.cert.contains("BEGIN CERTIFICATE") {
        return Err("the cluster CA's certificate is not PEM".into());
    }
    let issuer = Issuer::new(ca_params()?, ca_key);
    let mut params =
        CertificateParams::new(vec![host.to_string(), member.to_string()]).map_err(err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, member.to_string());
    params.distinguished_name = dn;
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().map_err(err)?;
    let cert = params.signed_by(&key, &issuer).map_err(err)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_certificate_is_signed_by_the_ca_for_its_address() {
        let ca = new_ca("lab").unwrap();
        let m = issue(&ca, "h1", "10.0.0.1").unwrap();
        assert!(m.cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(m.key.contains("PRIVATE KEY"));
        assert_ne!(m.cert, ca.cert);
        let broken = Pem {
            cert: ca.cert.clone(),
            key: "x".into(),
        };
        assert!(issue(&broken, "h1", "10.0.0.1").is_err());
    }
}
