//! The kill soak (issue 20): rounds of concurrent work — a create from an
//! image, a copy, a snapshot, a start, a delete, a backup and a backup
//! import — cut at a random moment by `kill -9` of kanted (every few rounds
//! by SIGTERM, as an init system stops it), then a restart and checks from
//! outside: the instances that were running before the round still run and
//! are shown RUNNING; the records and the pool agree (every listed instance
//! has its volume and exactly its snapshots' directories, no volume without
//! a record, no staging or deleting leftover); nothing runs that belongs to
//! no running instance (monitors, cgroups); and each interrupted piece of
//! work, retried, succeeds. `tests/soak.rs` runs a few rounds in the suite;
//! `kante-bench --only-kill-soak` runs many with release binaries.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kante_api::backup::InstanceBackupsPost;
use kante_client::{BackupImportOptions, Client};

use crate::{cgroup_dirs, copy_post, dir_entries, instance_post, processes_mentioning, Daemon};

/// How long and how hard to soak.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    pub rounds: usize,
    /// Seeds the random cut points (printed, so a failing run can be replayed).
    pub seed: u64,
    /// The cut comes between 0 and this many milliseconds after the work starts.
    pub max_delay_ms: u64,
    /// Every this many rounds the cut is a SIGTERM instead of a kill -9.
    pub sigterm_every: usize,
}

/// What a soak did.
#[derive(Debug, Default, Clone)]
pub struct SoakReport {
    pub kills: usize,
    pub terms: usize,
    /// Pieces of work the cut interrupted (their client saw an error).
    pub interrupted: usize,
    /// Pieces of work that had to be redone after the restart.
    pub retried: usize,
    /// From the restart to the first answer of `GET /1.0`, per round.
    pub recovery: Vec<Duration>,
}

/// A small xorshift generator: the cut points need no more, and a seed
/// replays them.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

const KEEPERS: [&str; 2] = ["keep0", "keep1"];
const SOURCE: &str = "src";
/// Enough data that a copy or a backup of the source takes a moment.
const SOURCE_MIB: u64 = 64;

/// Sets up the keepers (running) and the source (stopped, with data), and
/// a backup tarball of the source to import in every round.
async fn prepare(d: &Daemon, fp: &str, work: &Path) -> PathBuf {
    for k in KEEPERS {
        d.launch(fp, k, &[]).await;
    }
    d.launch(fp, SOURCE, &[]).await;
    let (code, out) = d
        .sh(
            SOURCE,
            &format!("dd if=/dev/urandom of=/data bs=1M count={SOURCE_MIB} 2>&1 && sync"),
        )
        .await;
    assert_eq!(code, 0, "{out}");
    d.client.stop_instance(SOURCE, true, -1).await.unwrap();
    let tarball = work.join("src-backup.tar.gz");
    backup_of_source(&d.client, "seed").await.unwrap();
    let mut f = tokio::fs::File::create(&tarball).await.unwrap();
    d.client
        .download_backup(SOURCE, "seed", &mut f, |_, _| {})
        .await
        .unwrap();
    d.client.delete_backup(SOURCE, "seed").await.unwrap();
    tarball
}

async fn backup_of_source(c: &Client, name: &str) -> kante_client::Result<()> {
    let req = InstanceBackupsPost {
        name: name.into(),
        ..Default::default()
    };
    let op = c.start_backup(SOURCE, &req).await?;
    c.wait_operation(&op.id, None).await.map(|_| ())
}

/// The names a round works on.
struct Round {
    created: String,
    copied: String,
    snapshot: String,
    started: String,
    deleted: String,
    backup: String,
    imported: String,
}

impl Round {
    fn new(r: usize) -> Round {
        Round {
            created: format!("new{r}"),
            copied: format!("cp{r}"),
            snapshot: format!("snap{r}"),
            started: format!("st{r}"),
            deleted: format!("del{r}"),
            backup: format!("bk{r}"),
            imported: format!("im{r}"),
        }
    }
}

/// Runs the soak on `d` (whose image `fp` is imported); `work` holds the
/// backup tarball. Panics, with the seed, on the first broken promise.
pub async fn kill_soak(d: &mut Daemon, fp: &str, work: &Path, cfg: &SoakConfig) -> SoakReport {
    eprintln!("kill soak: {} rounds, seed {}", cfg.rounds, cfg.seed);
    let tarball = prepare(d, fp, work).await;
    let mut rng = Rng(cfg.seed | 1);
    let mut report = SoakReport::default();
    for r in 0..cfg.rounds {
        let n = Round::new(r);
        // What the round starts from: one stopped instance to start, one to delete.
        d.create(fp, &n.started, &[]).await;
        d.create(fp, &n.deleted, &[]).await;
        let c = d.client.clone();
        let jobs: Vec<tokio::task::JoinHandle<bool>> = vec![
            spawn_job({
                let (c, p) = (
                    c.clone(),
                    instance_post(fp, &n.created, &[], Default::default()),
                );
                async move { c.create_instance(&p).await.map(|_| ()) }
            }),
            spawn_job({
                let (c, p) = (c.clone(), copy_post(SOURCE, &n.copied));
                async move { c.create_instance(&p).await.map(|_| ()) }
            }),
            spawn_job({
                let (c, s) = (c.clone(), n.snapshot.clone());
                async move { c.create_snapshot(SOURCE, &s, false).await }
            }),
            spawn_job({
                let (c, s) = (c.clone(), n.started.clone());
                async move { c.start_instance(&s).await }
            }),
            spawn_job({
                let (c, s) = (c.clone(), n.deleted.clone());
                async move { c.delete_instance(&s).await }
            }),
            spawn_job({
                let (c, b) = (c.clone(), n.backup.clone());
                async move { backup_of_source(&c, &b).await }
            }),
            spawn_job({
                let (c, t, i) = (c.clone(), tarball.clone(), n.imported.clone());
                async move {
                    let opts = BackupImportOptions {
                        name: Some(i),
                        pool: None,
                    };
                    c.import_backup(&t, &opts, |_, _| {}).await.map(|_| ())
                }
            }),
        ];
        tokio::time::sleep(Duration::from_millis(rng.below(cfg.max_delay_ms))).await;
        let term = cfg.sigterm_every > 0 && r % cfg.sigterm_every == cfg.sigterm_every - 1;
        if term {
            d.stop_term();
            report.terms += 1;
        } else {
            d.kill9();
            report.kills += 1;
        }
        for j in jobs {
            if !j.await.unwrap_or(false) {
                report.interrupted += 1;
            }
        }
        let t0 = Instant::now();
        d.start_again().await;
        report.recovery.push(t0.elapsed());
        let how = if term { "SIGTERM" } else { "kill -9" };
        let ctx = format!("round {r} ({how}, seed {})", cfg.seed);
        assert_consistent(d, &ctx).await;
        report.retried += retry(d, fp, &n, &tarball, &ctx).await;
        assert_consistent(d, &ctx).await;
        tidy(d, &n).await;
    }
    report
}

/// Runs one piece of work; true when it succeeded before the cut.
fn spawn_job<F>(f: F) -> tokio::task::JoinHandle<bool>
where
    F: std::future::Future<Output = kante_client::Result<()>> + Send + 'static,
{
    tokio::spawn(async move { f.await.is_ok() })
}

/// The promises that must hold after every restart.
pub async fn assert_consistent(d: &Daemon, ctx: &str) {
    let pool = d.dir.join("storage-pools/default");
    // The keepers kept running through the cut, and say so.
    for k in KEEPERS {
        let st = d.client.instance_state(k).await.unwrap();
        assert_eq!(st.status, "Running", "{ctx}: {k} after the restart");
        assert!(
            Path::new(&format!("/proc/{}", st.pid)).exists(),
            "{ctx}: {k}'s init {} is gone",
            st.pid
        );
    }
    // Records and volumes agree, with nothing half-made or half-deleted.
    let listed = d.client.instance_names().await.unwrap();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(
        dir_entries(&pool.join("containers")),
        sorted,
        "{ctx}: instance volumes against records"
    );
    for kind in ["containers", "containers-snapshots", "images", "custom"] {
        for e in dir_entries(&pool.join(kind)) {
            assert!(!e.starts_with('.'), "{ctx}: leftover {kind}/{e}");
        }
    }
    for e in dir_entries(&pool.join("containers-snapshots")) {
        assert!(
            listed.contains(&e),
            "{ctx}: snapshots of {e}, which has no record"
        );
    }
    let mut running = BTreeSet::new();
    for name in &listed {
        let snaps: Vec<String> = d
            .client
            .snapshots(name)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        let mut snaps_sorted = snaps.clone();
        snaps_sorted.sort();
        assert_eq!(
            dir_entries(&pool.join("containers-snapshots").join(name)),
            snaps_sorted,
            "{ctx}: snapshot directories of {name} against its records"
        );
        if d.client.instance_state(name).await.unwrap().status == "Running" {
            running.insert(name.clone());
        }
    }
    // Nothing runs for an instance that does not: one monitor per running
    // instance, and no instance cgroup beyond them.
    let dir = d.dir.to_string_lossy().to_string();
    let monitors = processes_mentioning(&dir)
        .into_iter()
        .filter(|p| p.contains("__monitor"))
        .count();
    assert_eq!(monitors, running.len(), "{ctx}: monitors for {running:?}");
    for root in cgroup_dirs(&d.cgroup_prefix()) {
        for child in dir_entries(&root) {
            if root.join(&child).is_dir() {
                assert!(
                    running.iter().any(|r| child.contains(r.as_str())),
                    "{ctx}: cgroup {} of no running instance ({running:?})",
                    root.join(&child).display()
                );
            }
        }
    }
}

/// Redoes what the cut interrupted; each retry must succeed. Returns how
/// many pieces had to be redone.
async fn retry(d: &Daemon, fp: &str, n: &Round, tarball: &Path, ctx: &str) -> usize {
    let c = &d.client;
    let names = c.instance_names().await.unwrap();
    let has = |n: &str| names.iter().any(|x| x == n);
    let mut redone = 0;
    if !has(&n.created) {
        c.create_instance(&instance_post(fp, &n.created, &[], Default::default()))
            .await
            .unwrap_or_else(|e| panic!("{ctx}: create {} again: {e}", n.created));
        redone += 1;
    }
    if !has(&n.copied) {
        c.create_instance(&copy_post(SOURCE, &n.copied))
            .await
            .unwrap_or_else(|e| panic!("{ctx}: copy {} again: {e}", n.copied));
        redone += 1;
    }
    let copied = d
        .dir
        .join("storage-pools/default/containers")
        .join(&n.copied);
    let size = std::fs::metadata(copied.join("rootfs/data")).map(|m| m.len());
    assert_eq!(
        size.ok(),
        Some(SOURCE_MIB << 20),
        "{ctx}: {} is a whole copy",
        n.copied
    );
    if !c
        .snapshots(SOURCE)
        .await
        .unwrap()
        .iter()
        .any(|s| s.name == n.snapshot)
    {
        c.create_snapshot(SOURCE, &n.snapshot, false)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: snapshot {} again: {e}", n.snapshot));
        redone += 1;
    }
    if c.instance_state(&n.started).await.unwrap().status != "Running" {
        c.start_instance(&n.started)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: start {} again: {e}", n.started));
        redone += 1;
    }
    if has(&n.deleted) {
        c.delete_instance(&n.deleted)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: delete {} again: {e}", n.deleted));
        redone += 1;
    }
    if !c
        .backups(SOURCE)
        .await
        .unwrap()
        .iter()
        .any(|b| b.name == n.backup)
    {
        backup_of_source(c, &n.backup)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: backup {} again: {e}", n.backup));
        redone += 1;
    }
    let mut sink = tokio::io::sink();
    c.download_backup(SOURCE, &n.backup, &mut sink, |_, _| {})
        .await
        .unwrap_or_else(|e| panic!("{ctx}: export of backup {}: {e}", n.backup));
    if !has(&n.imported) {
        let opts = BackupImportOptions {
            name: Some(n.imported.clone()),
            pool: None,
        };
        c.import_backup(tarball, &opts, |_, _| {})
            .await
            .unwrap_or_else(|e| panic!("{ctx}: import {} again: {e}", n.imported));
        redone += 1;
    }
    redone
}

/// Removes what the round made, so rounds do not pile up.
async fn tidy(d: &Daemon, n: &Round) {
    let c = &d.client;
    c.stop_instance(&n.started, true, -1).await.unwrap();
    for name in [&n.created, &n.copied, &n.started, &n.imported] {
        c.delete_instance(name).await.unwrap();
    }
    c.delete_snapshot(SOURCE, &n.snapshot).await.unwrap();
    c.delete_backup(SOURCE, &n.backup).await.unwrap();
}
