//! `kante remote …`: add (by address with a password, by token, or an
//! already-trusting server), list, remove, rename, switch, get-default and
//! set-url, as `lxc remote` does. The server's certificate is shown and
//! pinned on first contact; this client's key pair is made on first use.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{bail, Context, Result};
use kante_client::{kante_tls, Client, ClientError};
use serde_json::Value;

use super::print_list;
use crate::cli::RemoteCmd;
use crate::remote::address::Address;
use crate::remote::connect::{self, pem};
use crate::remote::token::Token;
use crate::remote::{check_remote_name, Config, Remote, LOCAL};

pub async fn run(cmd: RemoteCmd) -> Result<i32> {
    let mut cfg = Config::load()?;
    match cmd {
        RemoteCmd::Add {
            name,
            address,
            accept_certificate,
            password,
            token,
            protocol,
            public,
        } => {
            check_remote_name(&name)?;
            if cfg.has(&name) {
                bail!("Remote {name} exists already");
            }
            if !matches!(protocol.as_str(), "kante" | "lxd" | "simplestreams") {
                bail!("Invalid protocol {protocol:?}: kante, lxd or simplestreams");
            }
            let add = Add {
                name,
                accept_certificate,
                password,
                protocol,
                public,
            };
            if add.protocol == "simplestreams" {
                add.image_server(&mut cfg, &address).await?;
                return Ok(0);
            }
            match (token, Token::decode(&address)) {
                (Some(t), _) => {
                    let token = Token::decode(&t)?;
                    let addr = Address::parse(&address)?;
                    add.by_token(&mut cfg, &token, &t, &[addr]).await?
                }
                (None, Ok(token)) => {
                    let addrs = token
                        .addresses
                        .iter()
                        .map(|a| Address::parse(a))
                        .collect::<Result<Vec<_>>>()?;
                    add.by_token(&mut cfg, &token, address.trim(), &addrs)
                        .await?
                }
                // Base64 of something JSON-like is a token cut short, not
                // a host name.
                (None, Err(e))
                    if crate::remote::b64::decode(address.trim())
                        .is_some_and(|b| b.starts_with(b"{")) =>
                {
                    return Err(e)
                }
                (None, Err(_)) => add.by_address(&mut cfg, &Address::parse(&address)?).await?,
            }
        }
        RemoteCmd::List { format } => list(&cfg, format)?,
        RemoteCmd::Remove { name } => {
            cfg.configured(&name)?;
            if cfg.default_remote == name {
                bail!("Can't remove the default remote");
            }
            cfg.remotes.remove(&name);
            cfg.save()?;
            let _ = std::fs::remove_file(cfg.server_cert_path(&name));
        }
        RemoteCmd::Rename { name, new_name } => {
            let remote = cfg.configured(&name)?.clone();
            check_remote_name(&new_name)?;
            if cfg.has(&new_name) {
                bail!("Remote {new_name} exists already");
            }
            let (old_crt, new_crt) = (cfg.server_cert_path(&name), cfg.server_cert_path(&new_name));
            if old_crt.exists() {
                std::fs::rename(&old_crt, &new_crt)
                    .with_context(|| format!("Failed to rename {}", old_crt.display()))?;
            }
            cfg.remotes.remove(&name);
            cfg.remotes.insert(new_name.clone(), remote);
            if cfg.default_remote == name {
                cfg.default_remote = new_name;
            }
            cfg.save()?;
        }
        RemoteCmd::Switch { name } => {
            if !cfg.has(&name) {
                bail!("The remote \"{name}\" doesn't exist");
            }
            cfg.default_remote = name;
            cfg.save()?;
        }
        RemoteCmd::GetDefault => println!("{}", cfg.default_remote),
        RemoteCmd::SetUrl { name, address } => {
            let url = Address::parse(&address)?.url();
            cfg.configured(&name)?;
            if let Some(r) = cfg.remotes.get_mut(&name) {
                r.addr = url;
            }
            cfg.save()?;
        }
    }
    Ok(0)
}

fn list(cfg: &Config, format: crate::table::Format) -> Result<()> {
    let yes = |b: bool| if b { "YES" } else { "NO" }.to_string();
    let mut all = vec![(
        LOCAL.to_string(),
        Remote {
            addr: "unix://".into(),
            protocol: "kante".into(),
            public: false,
        },
    )];
    all.extend(cfg.remotes.iter().map(|(n, r)| (n.clone(), r.clone())));
    let map: std::collections::BTreeMap<&str, &Remote> =
        all.iter().map(|(n, r)| (n.as_str(), r)).collect();
    print_list(
        format,
        &map,
        &[
            "NAME",
            "URL",
            "PROTOCOL",
            "AUTH TYPE",
            "PUBLIC",
            "STATIC",
            "GLOBAL",
        ],
        || {
            all.iter()
                .map(|(name, r)| {
                    let local = name == LOCAL;
                    let shown = if *name == cfg.default_remote {
                        format!("{name} (current)")
                    } else {
                        name.clone()
                    };
                    let auth = if local {
                        "file access"
                    } else if r.protocol == "simplestreams" {
                        "none"
                    } else {
                        "tls"
                    };
                    vec![
                        shown,
                        r.addr.clone(),
                        r.protocol.clone(),
                        auth.into(),
                        yes(r.public || r.protocol == "simplestreams"),
                        yes(local),
                        "NO".into(),
                    ]
                })
                .collect()
        },
    )
}

struct Add {
    name: String,
    accept_certificate: bool,
    password: Option<String>,
    protocol: String,
    public: bool,
}

/// `auth` of `GET /1.0`: `trusted` or `untrusted`.
async fn auth(c: &Client) -> Result<String> {
    let resp = c.get("/1.0").await?;
    Ok(resp
        .envelope
        .metadata
        .get("auth")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string())
}

/// Asks a yes/no question on the terminal.
fn ask(question: &str) -> Result<String> {
    print!("{question}");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_string())
}

/// Reads a secret from the terminal without echoing it.
fn ask_secret(question: &str) -> Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    let orig = tcgetattr(&stdin).ok();
    if let Some(o) = &orig {
        let mut quiet = o.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &quiet);
    }
    let answer = ask(question);
    if let Some(o) = &orig {
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, o);
    }
    println!();
    answer
}

impl Add {
    /// `remote add NAME https://HOST[:PORT][/PATH] --protocol
    /// simplestreams`: a public image server, kept as its URL (port 443
    /// unless given). Its certificate is checked against the system's CAs
    /// when it is used, or pinned here with `--accept-certificate` (a
    /// server with a self-signed certificate).
    async fn image_server(&self, cfg: &mut Config, address: &str) -> Result<()> {
        let url = address.trim().trim_end_matches('/');
        let Some(rest) = url.strip_prefix("https://") else {
            bail!("A simplestreams remote is an https:// URL, not {address:?}");
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let mut addr = Address::parse(authority)?;
        let explicit_port = match authority.rsplit_once(']') {
            Some((_, tail)) => tail.starts_with(':'),
            None => authority.matches(':').count() == 1,
        };
        if !explicit_port {
            addr.port = 443;
        }
        if self.accept_certificate {
            let first = connect::https(&addr, None, None)?;
            // Only the handshake matters: the server need not speak LXD.
            let reached = first.get("/").await;
            let Some(der) = first.server_certificate() else {
                return Err(reached
                    .err()
                    .map(anyhow::Error::from)
                    .unwrap_or_else(|| anyhow::anyhow!("no certificate shown")))
                .with_context(|| format!("Failed to reach {url}"));
            };
            let path = cfg.server_cert_path(&self.name);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("Failed to create {}", dir.display()))?;
            }
            std::fs::write(&path, pem(&der))
                .with_context(|| format!("Failed to write {}", path.display()))?;
        }
        cfg.remotes.insert(
            self.name.clone(),
            Remote {
                addr: url.to_string(),
                protocol: self.protocol.clone(),
                public: true,
            },
        );
        cfg.save()
    }

    /// Saves the pinned certificate and the remote.
    fn save(&self, cfg: &mut Config, addr: &Address, der: &[u8]) -> Result<()> {
        let path = cfg.server_cert_path(&self.name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("Failed to create {}", dir.display()))?;
        }
        std::fs::write(&path, pem(der))
            .with_context(|| format!("Failed to write {}", path.display()))?;
        cfg.remotes.insert(
            self.name.clone(),
            Remote {
                addr: addr.url(),
                protocol: self.protocol.clone(),
                public: self.public,
            },
        );
        cfg.save()
    }

    /// `remote add NAME ADDRESS`: first contact shows the certificate,
    /// which the user accepts (or `--accept-certificate` did); then trust
    /// by password, or the server must trust this client already.
    async fn by_address(&self, cfg: &mut Config, addr: &Address) -> Result<()> {
        let identity = connect::identity(cfg)?;
        let first = connect::https(addr, None, Some(identity.clone()))?;
        first
            .get("/")
            .await
            .with_context(|| format!("Failed to reach {}", addr.url()))?;
        let der = first
            .server_certificate()
            .context("The server presented no certificate")?;
        let fp = kante_tls::fingerprint(&der);
        if !self.accept_certificate {
            if !std::io::stdin().is_terminal() {
                bail!("The certificate of {} has fingerprint {fp}; pass --accept-certificate to trust it (there is no terminal to ask on)", addr.url());
            }
            println!("Certificate fingerprint: {fp}");
            let answer = ask("ok (y/n/[fingerprint])? ")?;
            if !(answer.eq_ignore_ascii_case("y") || answer == fp) {
                bail!("Server certificate NACKed by user");
            }
        }
        // From here on, only that certificate.
        let c = connect::https(addr, Some(fp), Some(identity))?;
        if self.public || auth(&c).await? == "trusted" {
            return self.save(cfg, addr, &der);
        }
        let Some(mut password) = self.password.clone() else {
            bail!(
                "The server at {} does not trust this client: add it with --password (the server's core.trust_password), \
                 or make a token on the server with `kante config trust add NAME` and run `kante remote add {} TOKEN`",
                addr.url(),
                self.name
            );
        };
        if password.is_empty() {
            if !std::io::stdin().is_terminal() {
                bail!(
                    "--password without a value needs a terminal to ask on; use --password=SECRET"
                );
            }
            password = ask_secret(&format!("Admin password (or token) for {}: ", self.name))?;
        }
        c.post(
            "/1.0/certificates",
            &serde_json::json!({ "type": "client", "password": password }),
        )
        .await
        .context("The server refused the password")?;
        if auth(&c).await? != "trusted" {
            bail!("The server still does not trust this client after accepting the password");
        }
        self.save(cfg, addr, &der)
    }

    /// `remote add NAME TOKEN`: the first of the token's addresses that
    /// answers with the token's certificate, then trust by the token.
    async fn by_token(
        &self,
        cfg: &mut Config,
        token: &Token,
        text: &str,
        addrs: &[Address],
    ) -> Result<()> {
        let identity = connect::identity(cfg)?;
        let mut failures = Vec::new();
        for addr in addrs {
            let c = connect::https(
                addr,
                Some(token.fingerprint.clone()),
                Some(identity.clone()),
            )?;
            let state = match auth(&c).await {
                Ok(s) => s,
                Err(e) => {
                    if let Some(ClientError::CertificateMismatch { .. }) =
                        e.downcast_ref::<ClientError>()
                    {
                        return Err(e.context("The server is not the one the token names"));
                    }
                    failures.push(format!("{}: {}", addr.url(), crate::one_line(&e)));
                    continue;
                }
            };
            if state != "trusted" {
                c.post(
                    "/1.0/certificates",
                    &serde_json::json!({
                        "type": "client",
                        "password": text,
                        "trust_token": text,
                    }),
                )
                .await
                .context("The server refused the token")?;
                if auth(&c).await? != "trusted" {
                    bail!("The server still does not trust this client after accepting the token");
                }
            }
            let der = c
                .server_certificate()
                .context("The server presented no certificate")?;
            return self.save(cfg, addr, &der);
        }
        bail!(
            "None of the token's addresses answered: {}",
            failures.join("; ")
        )
    }
}
