//! Remotes: the servers this client talks to. The configuration lives in
//! `~/.config/kante/` (`$KANTE_CONF` overrides the directory): `config.yml`
//! (the default remote and each remote's address, protocol and public
//! flag), `servercerts/NAME.crt` (each server's certificate, pinned on
//! first contact) and `client.crt`/`client.key` (this client's key pair,
//! made on first use). The built-in `local` remote is the unix socket.

pub mod address;
pub mod b64;
pub mod connect;
pub mod route;
pub mod token;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The built-in remote: the local daemon's unix socket.
pub const LOCAL: &str = "local";

/// One configured remote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Remote {
    /// `https://host:port` (or `unix://` for `local`).
    pub addr: String,
    /// `kante`, `lxd` or `simplestreams`.
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// A public image server: no trust needed.
    #[serde(default)]
    pub public: bool,
}

fn default_protocol() -> String {
    "kante".into()
}

/// The whole `config.yml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Config {
    #[serde(default = "default_remote")]
    pub default_remote: String,
    /// The configured remotes (never `local`, which is built in).
    #[serde(default)]
    pub remotes: BTreeMap<String, Remote>,
    /// Where it was read from (and is saved to).
    #[serde(skip)]
    pub dir: PathBuf,
}

fn default_remote() -> String {
    LOCAL.into()
}

/// The configuration directory: `$KANTE_CONF`, else `~/.config/kante`.
pub fn conf_dir() -> Result<PathBuf> {
    conf_dir_of(std::env::var_os("KANTE_CONF"), std::env::var_os("HOME"))
}

/// [`conf_dir`] for given values of `KANTE_CONF` and `HOME`.
fn conf_dir_of(kante_conf: Option<OsString>, home: Option<OsString>) -> Result<PathBuf> {
    if let Some(d) = kante_conf.filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    match home.filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".config").join("kante")),
        None => bail!("Neither KANTE_CONF nor HOME is set: no place for the client configuration"),
    }
}

/// A remote name: what can stand before the `:` of `REMOTE:NAME`.
pub fn check_remote_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        bail!("Invalid remote name {name:?}: letters, digits, '-', '_' and '.' only");
    }
    Ok(())
}

impl Config {
    /// The configuration in `dir`; a missing file is the default one
    /// (only `local`), and nothing is written.
    pub fn load_from(dir: &Path) -> Result<Config> {
        let path = dir.join("config.yml");
        let mut cfg = match std::fs::read_to_string(&path) {
            Ok(text) => serde_yaml::from_str::<Config>(&text)
                .with_context(|| format!("Invalid client configuration {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config {
                default_remote: default_remote(),
                remotes: BTreeMap::new(),
                dir: PathBuf::new(),
            },
            Err(e) => return Err(e).context(format!("Failed to read {}", path.display())),
        };
        cfg.remotes.remove(LOCAL);
        cfg.dir = dir.to_path_buf();
        Ok(cfg)
    }

    /// The configuration of [`conf_dir`]; only `local` when there is no
    /// directory to read.
    pub fn load() -> Result<Config> {
        match conf_dir() {
            Ok(dir) => Config::load_from(&dir),
            Err(_) => Ok(Config {
                default_remote: default_remote(),
                remotes: BTreeMap::new(),
                dir: PathBuf::new(),
            }),
        }
    }

    /// Writes `config.yml` (through a temporary file and a rename).
    pub fn save(&self) -> Result<()> {
        if self.dir.as_os_str().is_empty() {
            bail!("Neither KANTE_CONF nor HOME is set: no place for the client configuration");
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("Failed to create {}", self.dir.display()))?;
        let path = self.dir.join("config.yml");
        let tmp = self.dir.join(".config.yml.tmp");
        let text = serde_yaml::to_string(self)?;
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("Failed to write {}", tmp.display()))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("Failed to write {}", path.display()))?;
        Ok(())
    }

    /// Whether `name` is a remote (`local` always is).
    pub fn has(&self, name: &str) -> bool {
        name == LOCAL || self.remotes.contains_key(name)
    }

    /// The pinned certificate file of remote `name`.
    pub fn server_cert_path(&self, name: &str) -> PathBuf {
        self.dir.join("servercerts").join(format!("{name}.crt"))
    }

    /// Fails unless `name` is a configured (not built-in) remote.
    pub fn configured(&self, name: &str) -> Result<&Remote> {
        if name == LOCAL {
            bail!("The remote \"local\" is built in and cannot be changed");
        }
        self.remotes
            .get(name)
            .with_context(|| format!("The remote \"{name}\" doesn't exist"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_round_trips_and_defaults_to_local() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("conf");
        let mut cfg = Config::load_from(&conf).unwrap();
        assert_eq!(cfg.default_remote, LOCAL);
        assert!(cfg.remotes.is_empty() && cfg.has(LOCAL) && !cfg.has("r"));
        assert!(!conf.exists(), "loading writes nothing");
        cfg.remotes.insert(
            "r".into(),
            Remote {
                addr: "https://[2001:db8::1]:8443".into(),
                protocol: "lxd".into(),
                public: false,
            },
        );
        cfg.default_remote = "r".into();
        cfg.save().unwrap();
        let back = Config::load_from(&conf).unwrap();
        assert_eq!(back, cfg);
        let text = std::fs::read_to_string(conf.join("config.yml")).unwrap();
        assert!(text.contains("default-remote: r"), "{text}");
        assert_eq!(back.server_cert_path("r"), conf.join("servercerts/r.crt"));
        // A hand-written file with only an address.
        std::fs::write(
            conf.join("config.yml"),
            "remotes:\n  s:\n    addr: https://h:1\n",
        )
        .unwrap();
        let s = Config::load_from(&conf).unwrap();
        assert_eq!(
            (s.default_remote.as_str(), s.remotes["s"].protocol.as_str()),
            ("local", "kante")
        );
        std::fs::write(conf.join("config.yml"), "remotes: [").unwrap();
        assert!(Config::load_from(&conf).is_err());
    }

    #[test]
    fn kante_conf_overrides_the_directory() {
        let some = |s: &str| Some(OsString::from(s));
        assert_eq!(
            conf_dir_of(some("/etc/kc"), some("/home/u")).unwrap(),
            Path::new("/etc/kc")
        );
        assert_eq!(
            conf_dir_of(some(""), some("/home/u")).unwrap(),
            Path::new("/home/u/.config/kante")
        );
        assert_eq!(
            conf_dir_of(None, some("/root")).unwrap(),
            Path::new("/root/.config/kante")
        );
        assert!(conf_dir_of(None, None).is_err());
    }

    #[test]
    fn remote_names() {
        for ok in ["r", "edge-1", "my.server", "a_b"] {
            check_remote_name(ok).unwrap();
        }
        for bad in ["", "a:b", "a/b", "-x", "a b"] {
            assert!(check_remote_name(bad).is_err(), "{bad}");
        }
    }
}
