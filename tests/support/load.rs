//! API load (issue 20): many concurrent clients, each on its own
//! connections, mixing lists, state reads, execs, a lifecycle of their own
//! instance (create, start, freeze, unfreeze, stop, delete) and two bad
//! requests (an unknown instance, a malformed body). Every good request
//! must succeed and every bad one must get its 4xx: a 5xx, a dropped
//! connection or a wrong status is an error. `tests/load.rs` runs a bounded
//! number of rounds in the suite; `kante-bench --only-load` runs for a
//! while against Kante and LXD side by side and prints the latencies.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kante_api::instance::{InstanceSource, InstancesPost};
use kante_client::Client;
use serde_json::json;

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub clients: usize,
    /// Each client stops after this many rounds…
    pub rounds: usize,
    /// …or when this much time has passed.
    pub duration: Duration,
    /// Running instances to read and exec in.
    pub running: Vec<String>,
    /// The image for the clients' own instances.
    pub fingerprint: String,
    /// Every this many clients, one also runs a lifecycle per round.
    pub lifecycle_every: usize,
    /// The root disk's pool, and the prefix of the clients' instance names.
    pub pool: String,
    pub prefix: String,
}

/// Latencies per kind of request, and what went wrong.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub latencies: BTreeMap<&'static str, Vec<Duration>>,
    pub errors: Vec<String>,
    pub elapsed: Duration,
}

impl LoadReport {
    /// The `p`-th percentile (0–100) of `kind`'s latencies.
    pub fn percentile(&self, kind: &str, p: f64) -> Option<Duration> {
        let mut v = self.latencies.get(kind)?.clone();
        if v.is_empty() {
            return None;
        }
        v.sort();
        let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        Some(v[i])
    }

    pub fn requests(&self) -> usize {
        self.latencies.values().map(Vec::len).sum()
    }
}

type Shared = Arc<Mutex<LoadReport>>;

/// Times `f` as `kind`; a result that is not what was expected is an error.
async fn timed<F>(rep: &Shared, kind: &'static str, f: F)
where
    F: std::future::Future<Output = Result<(), String>>,
{
    let t0 = Instant::now();
    let r = f.await;
    let dt = t0.elapsed();
    let mut g = rep.lock().unwrap();
    g.latencies.entry(kind).or_default().push(dt);
    if let Err(e) = r {
        g.errors.push(format!("{kind}: {e}"));
    }
}

/// A request that must fail with `want`.
fn refused(r: kante_client::Result<kante_client::ApiResponse>, want: u16) -> Result<(), String> {
    match r {
        Ok(resp) => Err(format!("accepted ({}), expected {want}", resp.status)),
        Err(e) if e.status() == Some(want) => Ok(()),
        Err(e) => Err(format!("expected {want}, got {e}")),
    }
}

fn own_instance(cfg: &LoadConfig, name: &str) -> InstancesPost {
    let mut post = InstancesPost {
        name: name.into(),
        source: InstanceSource {
            kind: "image".into(),
            fingerprint: cfg.fingerprint.clone(),
            ..Default::default()
        },
        ..Default::default()
    };
    post.put.profiles = Some(vec![]);
    post.put.devices.insert(
        "root".into(),
        [("type", "disk"), ("path", "/"), ("pool", cfg.pool.as_str())]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    post
}

async fn lifecycle(c: &Client, cfg: &LoadConfig, name: &str) -> Result<(), String> {
    let e = |what: &str| {
        let what = what.to_string();
        move |err: kante_client::ClientError| format!("{what} {name}: {err}")
    };
    c.create_instance(&own_instance(cfg, name))
        .await
        .map_err(e("create"))?;
    c.start_instance(name).await.map_err(e("start"))?;
    c.freeze_instance(name).await.map_err(e("freeze"))?;
    c.unfreeze_instance(name).await.map_err(e("unfreeze"))?;
    c.stop_instance(name, true, -1).await.map_err(e("stop"))?;
    c.delete_instance(name).await.map_err(e("delete"))?;
    Ok(())
}

async fn client_loop(id: usize, c: Client, cfg: Arc<LoadConfig>, rep: Shared, until: Instant) {
    for round in 0..cfg.rounds {
        if Instant::now() > until {
            break;
        }
        let target = &cfg.running[(id + round) % cfg.running.len()];
        timed(&rep, "GET /1.0/instances?recursion=1", async {
            c.get("/1.0/instances?recursion=1")
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await;
        timed(&rep, "GET /1.0/instances/NAME/state", async {
            c.instance_state(target)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await;
        timed(&rep, "exec true", async {
            match c.exec_capture(target, &["true"], &[], None).await {
                Ok(o) if o.code == 0 => Ok(()),
                Ok(o) => Err(format!("exit code {}", o.code)),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
        timed(&rep, "bad: unknown instance (404)", async {
            refused(
                c.get(&format!("/1.0/instances/{}-none", cfg.prefix)).await,
                404,
            )
        })
        .await;
        timed(&rep, "bad: malformed body (400)", async {
            refused(
                c.post("/1.0/instances", &json!({"name": 5, "source": "x"}))
                    .await,
                400,
            )
        })
        .await;
        if cfg.lifecycle_every > 0 && id.is_multiple_of(cfg.lifecycle_every) {
            let name = format!("{}{id}", cfg.prefix);
            timed(
                &rep,
                "create, start, freeze, unfreeze, stop, delete",
                async { lifecycle(&c, &cfg, &name).await },
            )
            .await;
        }
    }
}

/// Runs `cfg.clients` clients of `client` at once and gathers their figures.
pub async fn load(client: &Client, cfg: LoadConfig) -> LoadReport {
    let rep: Shared = Arc::default();
    let cfg = Arc::new(cfg);
    let t0 = Instant::now();
    let until = t0 + cfg.duration;
    let tasks: Vec<_> = (0..cfg.clients)
        .map(|id| {
            tokio::spawn(client_loop(
                id,
                client.clone(),
                cfg.clone(),
                rep.clone(),
                until,
            ))
        })
        .collect();
    for t in tasks {
        if let Err(e) = t.await {
            rep.lock()
                .unwrap()
                .errors
                .push(format!("a client panicked: {e}"));
        }
    }
    let mut out = std::mem::take(&mut *rep.lock().unwrap());
    out.elapsed = t0.elapsed();
    out
}
