//! Membership: each member's record in the roster (`roster/<name>`,
//! written when it enables or joins: name, address, whether it holds an
//! etcd voter) and its heartbeat (`alive/<name>`, under an etcd lease of
//! [`LEASE_TTL`] seconds kept alive every [`HEARTBEAT`], carrying its
//! architecture, version, roles and free memory, CPUs and disk). A member
//! whose lease expired (its daemon dead, or cut off) has no `alive/` key:
//! it is offline.

use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{Client, PutOptions};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

/// Seconds a heartbeat lives without renewal.
pub const LEASE_TTL: i64 = 10;
/// How often a member renews its lease and refreshes its facts.
pub const HEARTBEAT: Duration = Duration::from_secs(3);

pub const ROSTER: &str = "roster/";
pub const ALIVE: &str = "alive/";

/// A member as the roster records it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RosterEntry {
    pub name: String,
    /// Its HTTPS address (`host:port`).
    pub address: String,
    /// Whether it runs an etcd voter.
    pub voter: bool,
    /// Its etcd client URL (voters).
    #[serde(default)]
    pub etcd_url: String,
    #[serde(default)]
    pub architecture: String,
    /// Its HTTPS server certificate (PEM): other members pin it when they
    /// forward requests to it (empty in records of older members).
    #[serde(default)]
    pub certificate: String,
}

/// What a live member says of itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Heartbeat {
    pub name: String,
    pub address: String,
    pub architecture: String,
    pub version: String,
    pub roles: Vec<String>,
    pub memory_total: u64,
    pub memory_free: u64,
    pub cpus: u64,
    pub load1: f64,
    pub disk_free: u64,
    /// Unix seconds.
    pub at: u64,
    /// Its HTTPS server certificate (PEM), which forwarding pins.
    #[serde(default)]
    pub certificate: String,
    /// The images whose files this member holds (`KANTE_DIR/images/<fp>`):
    /// the scheduler places an image's instance where its files are, and a
    /// member without them fetches them from one listing them.
    #[serde(default)]
    pub images: Vec<String>,
}

/// The fingerprints of the images stored under `dir/images` (names of 64
/// hex digits; staging files and `.rootfs` parts aside).
fn stored_images(dir: &std::path::Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.join("images")) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    out.sort();
    out
}

/// This host's architecture as LXD names it.
pub fn architecture() -> String {
    match std::env::consts::ARCH {
        "x86_64" => "x86_64",
        "aarch64" => "aarch64",
        other => other,
    }
    .to_string()
}

fn meminfo(key: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
        .unwrap_or(0)
        * 1024
}

fn disk_free(path: &std::path::Path) -> u64 {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return 0;
    };
    // SAFETY: statvfs fills the zeroed struct it is given.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a struct to fill.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    st.f_bavail as u64 * st.f_frsize as u64
}

impl Heartbeat {
    /// This host's facts now.
    pub fn now(entry: &RosterEntry, dir: &std::path::Path) -> Heartbeat {
        let load1 = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|t| t.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        Heartbeat {
            name: entry.name.clone(),
            address: entry.address.clone(),
            architecture: architecture(),
            version: env!("CARGO_PKG_VERSION").into(),
            roles: if entry.voter {
                vec!["database".into()]
            } else {
                Vec::new()
            },
            memory_total: meminfo("MemTotal"),
            memory_free: meminfo("MemAvailable"),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get() as u64)
                .unwrap_or(1),
            load1,
            disk_free: disk_free(dir),
            at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            certificate: entry.certificate.clone(),
            images: stored_images(dir),
        }
    }
}

/// The heartbeat task of this member; revokes its lease when stopped.
pub struct Beat {
    task: JoinHandle<()>,
    client: Client,
    lease: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl Beat {
    /// Keeps `alive/<name>` under a lease for as long as it runs; a lease
    /// lost (etcd away longer than the TTL) is granted anew.
    pub fn start(client: Client, prefix: String, entry: RosterEntry, dir: PathBuf) -> Beat {
        let lease = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
        let held = lease.clone();
        let mut c = client.clone();
        let key = format!("{prefix}{ALIVE}{}", entry.name);
        let task = tokio::spawn(async move {
            loop {
                if let Err(e) = beat(&mut c, &key, &entry, &dir, &held).await {
                    tracing::debug!("cluster heartbeat: {e}");
                }
                tokio::time::sleep(HEARTBEAT).await;
            }
        });
        Beat {
            task,
            client,
            lease,
        }
    }

    /// The lease the heartbeat lives under now (0 before the first grant).
    pub fn lease_id(&self) -> i64 {
        self.lease.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops beating and revokes the lease (the member is offline at once).
    pub async fn stop(self) {
        self.task.abort();
        let id = self.lease.load(std::sync::atomic::Ordering::Relaxed);
        if id != 0 {
            let mut c = self.client.clone();
            let _ = tokio::time::timeout(Duration::from_secs(2), c.lease_revoke(id)).await;
        }
    }
}

async fn beat(
    c: &mut Client,
    key: &str,
    entry: &RosterEntry,
    dir: &std::path::Path,
    held: &std::sync::atomic::AtomicI64,
) -> Result<(), String> {
    use std::sync::atomic::Ordering;
    let bound = Duration::from_secs(3);
    let mut id = held.load(Ordering::Relaxed);
    if id != 0 {
        let alive = tokio::time::timeout(bound, async {
            let (mut keeper, mut stream) = c.lease_keep_alive(id).await?;
            keeper.keep_alive().await?;
            Ok::<_, etcd_client::Error>(stream.message().await?.map(|r| r.ttl()).unwrap_or(0))
        })
        .await
        .map_err(|_| "etcd did not answer".to_string())?;
        match alive {
            Ok(ttl) if ttl > 0 => {}
            // Expired (etcd-client reports a lease etcd no longer knows
            // as an error, "lease not found", not as a TTL of 0): grant
            // another below, or the member would stay offline for good
            // after an outage longer than the TTL. Any other failure:
            // the same, as a lease that still lives just runs out.
            Ok(_) => id = 0,
            Err(e) => {
                held.store(0, Ordering::Relaxed);
                return Err(e.to_string());
            }
        }
    }
    if id == 0 {
        let granted = tokio::time::timeout(bound, c.lease_grant(LEASE_TTL, None))
            .await
            .map_err(|_| "etcd did not answer".to_string())?
            .map_err(|e| e.to_string())?;
        id = granted.id();
        held.store(id, Ordering::Relaxed);
    }
    let value = serde_json::to_vec(&Heartbeat::now(entry, dir)).map_err(|e| e.to_string())?;
    let put = tokio::time::timeout(
        bound,
        c.put(key, value, Some(PutOptions::new().with_lease(id))),
    )
    .await
    .map_err(|_| "etcd did not answer".to_string())?;
    if let Err(e) = put {
        // A lease etcd no longer knows: grant another next time.
        held.store(0, Ordering::Relaxed);
        return Err(e.to_string());
    }
    Ok(())
}
