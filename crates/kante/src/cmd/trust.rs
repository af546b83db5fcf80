//! `kante config trust …`: the clients a server trusts (`/1.0/certificates`),
//! and one-time trust tokens for new ones, as `lxc config trust` does.

use anyhow::{bail, Context, Result};
use kante_api::operation::Operation;
use kante_client::Client;
use serde::{Deserialize, Serialize};

use super::print_list;
use crate::cli::{Restriction, TrustCmd};
use crate::remote::b64;
use crate::remote::token::Token;

/// One trusted certificate as `GET /1.0/certificates?recursion=1` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Certificate {
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub restricted: bool,
    #[serde(default)]
    pub certificate: String,
    #[serde(default)]
    pub fingerprint: String,
}

/// The arguments after a bare `REMOTE:` (already split off, so empty).
fn rest(args: &[String]) -> &[String] {
    match args.split_first() {
        Some((first, rest)) if first.is_empty() => rest,
        _ => args,
    }
}

fn one(args: &[String], what: &str) -> Result<String> {
    match rest(args) {
        [one] => Ok(one.clone()),
        _ => bail!("Expected [REMOTE:] {what}"),
    }
}

pub async fn run(c: &Client, cmd: TrustCmd) -> Result<i32> {
    match cmd {
        TrustCmd::Add { args, ui, limits } => {
            if ui && limits.restricted {
                bail!("A web view session cannot be restricted: leave out --ui or --restricted");
            }
            add(c, &one(&args, "NAME")?, ui, &limits).await?
        }
        TrustCmd::AddCertificate { args, name, limits } => {
            let path = one(&args, "FILE")?;
            let data = std::fs::read(&path).with_context(|| format!("Failed to read {path}"))?;
            let der = kante_tls::parse_certificate(&data)
                .with_context(|| format!("{path} is not a certificate"))?;
            let mut body = serde_json::json!({
                "type": "client",
                "certificate": b64::encode(&der),
            });
            limits.add_to(&mut body);
            if let Some(n) = name {
                body["name"] = n.into();
            }
            c.post("/1.0/certificates", &body).await?;
        }
        TrustCmd::List { format, .. } => {
            let certs = list(c).await?;
            print_list(
                format,
                &certs,
                &["NAME", "TYPE", "FINGERPRINT", "ISSUE DATE", "EXPIRY DATE"],
                || {
                    certs
                        .iter()
                        .map(|cert| {
                            let (issued, expires) = validity(&cert.certificate);
                            vec![
                                cert.name.clone(),
                                cert.kind.clone(),
                                cert.fingerprint.chars().take(12).collect(),
                                issued,
                                expires,
                            ]
                        })
                        .collect()
                },
            )?;
        }
        TrustCmd::Remove { args } => {
            let which = one(&args, "FINGERPRINT|NAME")?;
            let fp = find(&list(c).await?, &which)?;
            c.delete(&format!("/1.0/certificates/{fp}")).await?;
        }
    }
    Ok(0)
}

async fn list(c: &Client) -> Result<Vec<Certificate>> {
    Ok(c.get_json("/1.0/certificates?recursion=1").await?)
}

/// The fingerprint of the one certificate named `which` (by name, or by
/// fingerprint or a prefix of one).
pub fn find(certs: &[Certificate], which: &str) -> Result<String> {
    let hits: Vec<&Certificate> = certs.iter().filter(|c| c.name == which).collect();
    let hits = if hits.is_empty() {
        certs
            .iter()
            .filter(|c| !which.is_empty() && c.fingerprint.starts_with(which))
            .collect()
    } else {
        hits
    };
    match hits.as_slice() {
        [one] => Ok(one.fingerprint.clone()),
        [] => bail!("No trusted certificate matches {which:?}"),
        _ => bail!(
            "{which:?} matches more than one trusted certificate; give more of the fingerprint"
        ),
    }
}

/// Issue and expiry dates of a PEM certificate (empty if unreadable).
fn validity(pem: &str) -> (String, String) {
    let Ok(der) = kante_tls::parse_certificate(pem.as_bytes()) else {
        return (String::new(), String::new());
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
        return (String::new(), String::new());
    };
    let day = |t: x509_parser::time::ASN1Time| {
        chrono::DateTime::from_timestamp(t.timestamp(), 0)
            .map(|d| d.format("%b %-d, %Y at %-I:%M%P (UTC)").to_string())
            .unwrap_or_default()
    };
    (
        day(cert.validity().not_before),
        day(cert.validity().not_after),
    )
}

/// `POST /1.0/certificates` with `token: true`: the server keeps a token
/// operation; its metadata makes the token lxc prints, or with `ui` the
/// web view's one-time login link (`https://ADDR/ui/login#SECRET`: the
/// fragment never reaches a server log or a referrer).
async fn add(c: &Client, name: &str, ui: bool, limits: &Restriction) -> Result<()> {
    let mut body = serde_json::json!({ "name": name, "type": "client", "token": true });
    limits.add_to(&mut body);
    let resp = c.post("/1.0/certificates", &body).await?;
    let op: Operation = resp
        .metadata()
        .context("The server did not answer with a token operation")?;
    let token = Token::from_operation(name, &op.metadata)?;
    if ui {
        println!("Web view login link for {name} (opens one browser session, once):");
        println!("{}", login_link(&token));
        println!("Server certificate fingerprint: {}", token.fingerprint);
        return Ok(());
    }
    println!("Client {name} certificate add token:");
    println!("{}", token.encode());
    Ok(())
}

/// The web view's login link for `token`, at the server's first address.
fn login_link(token: &Token) -> String {
    let addr = token.addresses.first().map(String::as_str).unwrap_or("");
    format!("https://{addr}/ui/login#{}", token.secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_link_carries_the_secret_in_its_fragment() {
        let t = Token {
            client_name: "b".into(),
            fingerprint: "f".into(),
            addresses: vec!["127.0.0.1:8443".into(), "[::1]:8443".into()],
            secret: "s3cr3t".into(),
            expires_at: None,
        };
        assert_eq!(login_link(&t), "https://127.0.0.1:8443/ui/login#s3cr3t");
    }

    fn cert(name: &str, fp: &str) -> Certificate {
        Certificate {
            name: name.into(),
            kind: "client".into(),
            restricted: false,
            certificate: String::new(),
            fingerprint: fp.into(),
        }
    }

    #[test]
    fn certificates_are_found_by_name_or_fingerprint_prefix() {
        let certs = [
            cert("a", "abc123"),
            cert("b", "abd456"),
            cert("abc", "ffff"),
        ];
        assert_eq!(find(&certs, "b").unwrap(), "abd456");
        // A name wins over a fingerprint prefix.
        assert_eq!(find(&certs, "abc").unwrap(), "ffff");
        assert_eq!(find(&certs, "abd").unwrap(), "abd456");
        assert!(find(&certs, "ab")
            .unwrap_err()
            .to_string()
            .contains("more than one"));
        assert!(find(&certs, "zz").is_err());
    }
}
