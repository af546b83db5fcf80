//! [`Manager`]: this member's part in a cluster. kanted holds one; it
//! reads the node-local record of the membership (`$KANTE_DIR/cluster/
//! member.json` with the TLS files beside it), supervises this host's etcd
//! voter (`etcd_proc.rs`), connects [`EtcdState`] and switches the
//! engine's [`SwitchState`] to it, and keeps the heartbeat
//! (`membership.rs`). `enable.rs` makes a cluster of one, `join.rs` issues
//! join tokens, accepts members and joins, `members.rs` lists and removes, `evacuated.rs` marks
//! evacuated members.
//!
//! Local-first: at start, etcd is not waited for. The state starts from
//! its snapshot (`snapshot.rs`) when etcd does not answer, serves this
//! member's instances, and catches up once etcd is back.

mod enable;
pub mod evacuated;
pub mod groups;
pub mod join;
pub mod members;
mod services;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use kante_store::{NodeState, SharedState, SwitchState};
use serde::{Deserialize, Serialize};

use crate::etcd_proc::{EtcdSpec, Supervisor};
use crate::membership::Beat;
use crate::{EtcdConfig, EtcdState, EtcdTls};

/// etcd's client port on a member's cluster address.
pub const ETCD_CLIENT_PORT: u16 = 8444;
/// etcd's peer port.
pub const ETCD_PEER_PORT: u16 = 8445;
/// At most this many etcd voters; further members are clients only.
pub const MAX_VOTERS: usize = 3;
/// The key prefix's cluster name (`/kante/default/`).
pub const CLUSTER_NAME: &str = "default";
/// How long a join token lives.
pub const TOKEN_TTL: i64 = 3 * 3600;

/// A cluster call refused or failed, with the API status it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterError {
    Bad(String),
    Forbidden(String),
    NotFound(String),
    Conflict(String),
    Unavailable(String),
    Internal(String),
}

impl std::fmt::Display for ClusterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use ClusterError::*;
        match self {
            Bad(m) | Forbidden(m) | NotFound(m) | Conflict(m) | Unavailable(m) | Internal(m) => {
                f.write_str(m)
            }
        }
    }
}

impl From<kante_store::StoreError> for ClusterError {
    fn from(e: kante_store::StoreError) -> Self {
        match e {
            kante_store::StoreError::Unavailable(_) => ClusterError::Unavailable(e.to_string()),
            kante_store::StoreError::Conflict(_) => ClusterError::Conflict(e.to_string()),
            kante_store::StoreError::NotFound(_) => ClusterError::NotFound(e.to_string()),
            other => ClusterError::Internal(other.to_string()),
        }
    }
}

pub type Result<T> = std::result::Result<T, ClusterError>;

/// This daemon's HTTPS identity (its server certificate).
#[derive(Clone)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
    pub fingerprint: String,
}

/// The node-local record of this member's membership.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MemberConfig {
    pub cluster: String,
    pub member: String,
    /// Its HTTPS address, `host:port`.
    pub address: String,
    /// The host part: etcd listens there.
    pub host: String,
    /// Whether it runs an etcd voter.
    pub voter: bool,
    /// etcd client URLs to reach the cluster through.
    pub endpoints: Vec<String>,
    /// etcd's `--initial-cluster` when this member's etcd was made.
    pub initial_cluster: String,
    pub new_cluster: bool,
}

/// What runs while this member is clustered.
struct Running {
    config: MemberConfig,
    etcd: Arc<EtcdState>,
}

pub struct Manager {
    kante_dir: PathBuf,
    switch: Arc<SwitchState>,
    node: Arc<dyn NodeState>,
    identity: Identity,
    running: RwLock<Option<Running>>,
    /// Serialises enable, join and remove; holds the supervisor and beat.
    tasks: tokio::sync::Mutex<Tasks>,
    /// This member's service records as last put, with their lease
    /// (`services.rs`).
    published: tokio::sync::Mutex<std::collections::BTreeMap<String, (Vec<u8>, i64)>>,
    /// The DNS responder of the service names, once started.
    dns: std::sync::OnceLock<crate::dns::Responder>,
}

#[derive(Default)]
struct Tasks {
    etcd: Option<Supervisor>,
    beat: Option<Beat>,
}

impl Manager {
    /// Opens this member's cluster part: when `member.json` says it is
    /// clustered, starts its etcd (a voter), connects (from the snapshot
    /// if etcd does not answer) and switches `switch` to the cluster.
    pub async fn open(
        kante_dir: &Path,
        switch: Arc<SwitchState>,
        node: Arc<dyn NodeState>,
        identity: Identity,
    ) -> Result<Arc<Manager>> {
        let m = Arc::new(Manager {
            kante_dir: kante_dir.to_path_buf(),
            switch,
            node,
            identity,
            running: RwLock::new(None),
            tasks: tokio::sync::Mutex::new(Tasks::default()),
            published: Default::default(),
            dns: std::sync::OnceLock::new(),
        });
        let record = m.dir().join("member.json");
        if let Ok(bytes) = std::fs::read(&record) {
            let config: MemberConfig = serde_json::from_slice(&bytes).map_err(|e| {
                ClusterError::Internal(format!("reading {}: {e}", record.display()))
            })?;
            let mut tasks = m.tasks.lock().await;
            m.start(&mut tasks, config, false, true).await?;
        }
        Ok(m)
    }

    /// Starts the DNS responder of the service names under
    /// `svc.<domain>` on a loopback port (once; later calls return the
    /// same address), which every managed network's dnsmasq forwards to.
    pub async fn serve_dns(
        self: &Arc<Self>,
        domain: &str,
    ) -> std::io::Result<std::net::SocketAddr> {
        if let Some(r) = self.dns.get() {
            return Ok(r.addr());
        }
        let me = Arc::downgrade(self);
        let lookup: crate::dns::Lookup =
            Arc::new(move || me.upgrade().map(|m| m.services()).unwrap_or_default());
        let responder = crate::dns::Responder::start(domain, lookup).await?;
        let addr = responder.addr();
        let _ = self.dns.set(responder);
        Ok(addr)
    }

    /// `$KANTE_DIR/cluster`.
    fn dir(&self) -> PathBuf {
        self.kante_dir.join("cluster")
    }

    fn etcd_dir(&self) -> PathBuf {
        self.kante_dir.join("etcd")
    }

    /// Whether this member is in a cluster, and its name there.
    pub fn member_name(&self) -> Option<String> {
        self.running
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|r| r.config.member.clone())
    }

    fn current(&self) -> Option<(MemberConfig, Arc<EtcdState>)> {
        self.running
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|r| (r.config.clone(), r.etcd.clone()))
    }

    fn clustered(&self) -> Result<(MemberConfig, Arc<EtcdState>)> {
        self.current()
            .ok_or_else(|| ClusterError::Bad("This server is not clustered".into()))
    }

    /// `GET /1.0/cluster`.
    pub fn cluster_get(&self) -> kante_api::cluster::Cluster {
        let name = self.member_name();
        kante_api::cluster::Cluster {
            enabled: name.is_some(),
            server_name: name.unwrap_or_default(),
            member_config: Vec::new(),
        }
    }

    fn tls(&self) -> EtcdTls {
        let d = self.dir();
        EtcdTls {
            ca: d.join("ca.crt"),
            cert: Some(d.join("member.crt")),
            key: Some(d.join("member.key")),
        }
    }

    fn spec(&self, config: &MemberConfig) -> EtcdSpec {
        let tls = self.tls();
        EtcdSpec {
            name: config.member.clone(),
            dir: self.etcd_dir(),
            host: config.host.clone(),
            client_port: ETCD_CLIENT_PORT,
            peer_port: ETCD_PEER_PORT,
            ca: tls.ca,
            cert: tls.cert.unwrap_or_default(),
            key: tls.key.unwrap_or_default(),
            initial_cluster: config.initial_cluster.clone(),
            new_cluster: config.new_cluster,
        }
    }

    /// Starts etcd (a voter), connects, switches the state, starts the
    /// heartbeat. `wait`: etcd must answer first (enable and join; at a
    /// daemon's start it need not); `switch`: switch the state now.
    async fn start(
        &self,
        tasks: &mut Tasks,
        config: MemberConfig,
        wait: bool,
        switch: bool,
    ) -> Result<()> {
        if config.voter {
            let sup = Supervisor::start(self.spec(&config))
                .map_err(|e| ClusterError::Internal(format!("starting etcd: {e}")))?;
            tasks.etcd = Some(sup);
        }
        // A voter talks to its own etcd (on its host, and a member of the
        // quorum once it answers); a client member to the voters.
        let endpoints = if config.voter {
            vec![self.spec(&config).client_url()]
        } else {
            config.endpoints.clone()
        };
        let mut etcd_config =
            EtcdConfig::new(endpoints, &config.cluster, &config.member, &config.address);
        etcd_config.tls = Some(self.tls());
        etcd_config.snapshot = Some(self.dir().join("snapshot.json"));
        if wait {
            self.wait_etcd(&etcd_config, Duration::from_secs(30))
                .await?;
        }
        let etcd = Arc::new(EtcdState::connect(&etcd_config).await?);
        let entry = crate::membership::RosterEntry {
            name: config.member.clone(),
            address: config.address.clone(),
            voter: config.voter,
            etcd_url: if config.voter {
                self.spec(&config).client_url()
            } else {
                String::new()
            },
            architecture: crate::membership::architecture(),
            certificate: self.identity.cert_pem.clone(),
        };
        // Members forward requests to each other, each showing its server
        // certificate: this member's must be in the shared trust store
        // (the joining side trusts a new member's; the first member, and
        // members of older versions, trust their own here). Not waited
        // for: etcd may not answer yet at a daemon's start.
        tokio::spawn(join::trust_self(
            etcd.clone(),
            config.member.clone(),
            self.identity.cert_pem.clone(),
        ));
        tasks.beat = Some(Beat::start(
            etcd.client(),
            etcd.prefix().to_string(),
            entry,
            self.kante_dir.clone(),
        ));
        if switch {
            self.switch
                .switch_to(etcd.clone() as Arc<dyn SharedState>, &config.member);
        }
        *self.running.write().unwrap_or_else(|e| e.into_inner()) = Some(Running { config, etcd });
        Ok(())
    }

    /// Waits until etcd answers a read (bounded by `limit`).
    async fn wait_etcd(&self, config: &EtcdConfig, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        let mut last = String::new();
        while Instant::now() < deadline {
            let mut probe = config.clone();
            probe.snapshot = None;
            probe.timeout = Duration::from_secs(2);
            match crate::state::probe(&probe).await {
                Ok(()) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let log = std::fs::read_to_string(self.etcd_dir().join("etcd.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(3).collect();
        Err(ClusterError::Unavailable(format!(
            "etcd did not answer within {}s: {last} {}",
            limit.as_secs(),
            tail.join(" | ")
        )))
    }

    /// Stops what [`Manager::start`] started and forgets the membership
    /// files (an enable or join that failed half-way).
    async fn undo(&self, tasks: &mut Tasks) {
        if let Some(b) = tasks.beat.take() {
            b.stop().await;
        }
        if let Some(e) = tasks.etcd.take() {
            e.stop().await;
        }
        *self.running.write().unwrap_or_else(|e| e.into_inner()) = None;
        let _ = std::fs::remove_dir_all(self.dir());
        let _ = std::fs::remove_dir_all(self.etcd_dir());
    }

    /// Writes the membership files (TLS material mode 0600).
    fn write_files(
        &self,
        config: &MemberConfig,
        ca: &crate::ca::Pem,
        me: &crate::ca::Pem,
    ) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let d = self.dir();
        let io =
            |e: std::io::Error| ClusterError::Internal(format!("writing {}: {e}", d.display()));
        std::fs::create_dir_all(&d).map_err(io)?;
        for (name, text) in [
            ("ca.crt", &ca.cert),
            ("ca.key", &ca.key),
            ("member.crt", &me.cert),
            ("member.key", &me.key),
        ] {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(d.join(name))
                .map_err(io)?;
            f.write_all(text.as_bytes()).map_err(io)?;
        }
        let json =
            serde_json::to_vec_pretty(config).map_err(|e| ClusterError::Internal(e.to_string()))?;
        std::fs::write(d.join("member.json.tmp"), json).map_err(io)?;
        std::fs::rename(d.join("member.json.tmp"), d.join("member.json")).map_err(io)
    }

    /// The cluster CA (this member has a copy).
    fn ca(&self) -> Result<crate::ca::Pem> {
        let read = |n: &str| {
            std::fs::read_to_string(self.dir().join(n))
                .map_err(|e| ClusterError::Internal(format!("reading the cluster CA: {e}")))
        };
        Ok(crate::ca::Pem {
            cert: read("ca.crt")?,
            key: read("ca.key")?,
        })
    }

    /// The daemon is stopping: heartbeat revoked (offline at once), etcd
    /// killed.
    pub async fn shutdown(&self) {
        let mut tasks = self.tasks.lock().await;
        if let Some((_, etcd)) = self.current() {
            etcd.save_snapshot(&self.dir().join("snapshot.json"));
        }
        if let Some(b) = tasks.beat.take() {
            b.stop().await;
        }
        if let Some(e) = tasks.etcd.take() {
            e.stop().await;
        }
    }
}

/// The IP address of an HTTPS address (`10.0.0.1:8443`, `[fd00::1]:8443`)
/// that other members can reach: not unspecified, not a port alone.
pub fn reachable_host(https_address: &str) -> Option<String> {
    let sa: std::net::SocketAddr = https_address.trim().parse().ok()?;
    let ip = sa.ip();
    (!ip.is_unspecified()).then(|| ip.to_string())
}

/// A member name: letters, digits and `-`, at most 63 bytes.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ClusterError::Bad(format!(
            "Invalid member name {name:?}: letters, digits and '-' only, at most 63"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_reachable_address_and_a_plain_name_will_do() {
        assert_eq!(reachable_host("10.0.0.1:8443").as_deref(), Some("10.0.0.1"));
        assert_eq!(reachable_host("[fd00::1]:8443").as_deref(), Some("fd00::1"));
        assert_eq!(reachable_host("[::]:8443"), None);
        assert_eq!(reachable_host(":8443"), None);
        assert!(check_name("h1").is_ok());
        for bad in ["", "a/b", "-x", "a b"] {
            assert!(
                matches!(check_name(bad), Err(ClusterError::Bad(_))),
                "{bad:?}"
            );
        }
    }
}
