//! kante-bench: Kante's performance, side by side with LXD when an LXD is
//! installed on the same host (same image, same pool type, interleaved runs).
//! Prints a markdown table of min/median/max and writes the raw figures as JSON.
//! Last comes density (see `density.rs`): how many idle instances fit in a
//! memory budget, one target after the other.

mod cluster;
mod density;
mod https;
mod load;
mod moves;
mod moves_lxd;
mod net;
mod overlay;
mod proc;
mod report;
mod site;
mod soak;
mod storage;
mod target;
mod transfer;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;

use report::Results;
use target::Target;

#[derive(Parser)]
#[command(about = "Benchmarks Kante (and LXD, if installed) on the same image")]
struct Args {
    /// Unified image tarball to launch (default: the cached Debian build).
    #[arg(
        long,
        default_value = "/var/cache/kante/images/debian-bookworm-amd64.tar.zst"
    )]
    image: PathBuf,
    /// Lifecycle runs per target (launch, stop, start, delete).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// exec round trips per target.
    #[arg(long, default_value_t = 50)]
    exec_runs: usize,
    /// Instances running for the memory and list figures.
    #[arg(long, default_value_t = 20)]
    instances: usize,
    /// Also measure the host's LXD (/var/lib/lxd/unix.socket) if it answers
    /// (with `--only-move`: two private LXDs of the bench's own instead).
    #[arg(long)]
    lxd: bool,
    /// Install Debian's lxd package, start it and give it a dir pool (implies --lxd).
    #[arg(long)]
    install_lxd: bool,
    /// Tiny image for the list-at-scale figures (created, stopped instances).
    #[arg(long, default_value = "/var/cache/kante/images/busybox-amd64.tar.zst")]
    busybox: PathBuf,
    /// Instance counts for the list-at-scale figures (`--list-counts ""` skips).
    #[arg(long, value_delimiter = ',', default_value = "100,500", value_parser = list_count)]
    list_counts: Vec<Option<usize>>,
    /// Skip the time-to-first-DHCP-lease scenario (it makes a bridge per daemon).
    #[arg(long)]
    no_dhcp: bool,
    /// Storage passes per pool type (dir, and btrfs on a loop file): launch,
    /// snapshot, restore, copy, deletes. Kante only; 0 skips them.
    #[arg(long, default_value_t = 5)]
    storage_runs: usize,
    /// Only the storage scenarios.
    #[arg(long, conflicts_with = "only_density")]
    only_storage: bool,
    /// Density: stop starting idle instances once the host's MemAvailable
    /// has dropped by this many GiB.
    #[arg(long, default_value_t = 8.0)]
    density_budget_gib: f64,
    /// Density: most instances to start (0 skips the scenario).
    #[arg(long, default_value_t = 200)]
    density_max: usize,
    /// Density: the pool for the instances' root disks (btrfs: a 20 GiB
    /// sparse loop file made for the run; dir: a full rootfs copy each).
    #[arg(long, value_enum, default_value = "btrfs")]
    density_pool: density::PoolKind,
    /// Only the idle daemon RSS and the density scenario.
    #[arg(long)]
    only_density: bool,
    /// Only the scale figures: lists of `--list-counts` instances, then density.
    #[arg(long, conflicts_with_all = ["only_density", "only_storage"])]
    only_scale: bool,
    /// Only exec and file transfer (push and pull, 4 KiB and 64 MiB).
    #[arg(long, conflicts_with_all = ["only_density", "only_storage", "only_scale"])]
    only_transfer: bool,
    /// Only the leak accounting: `--soak-cycles` create/start/exec/stop/
    /// delete cycles of the busybox image per Kante (see `soak.rs`).
    #[arg(long, conflicts_with_all = ["only_density", "only_storage", "only_scale", "only_transfer"])]
    only_soak: bool,
    /// Only the kill soak: `--soak-rounds` rounds of concurrent work cut
    /// by kill -9 or SIGTERM of kanted (see `kante_integration::soak`).
    #[arg(long, conflicts_with_all = ["only_density", "only_storage", "only_scale", "only_transfer", "only_soak"])]
    only_kill_soak: bool,
    /// Rounds of the kill soak.
    #[arg(long, default_value_t = 100)]
    soak_rounds: usize,
    /// Only the API load: `--load-clients` concurrent clients for
    /// `--load-seconds` per target (see `load.rs`).
    #[arg(long, conflicts_with_all = ["only_density", "only_storage", "only_scale", "only_transfer", "only_soak", "only_kill_soak"])]
    only_load: bool,
    #[arg(long, default_value_t = 200)]
    load_clients: usize,
    #[arg(long, default_value_t = 30)]
    load_seconds: u64,
    /// Only the API over HTTPS (beside the unix socket, and LXD over
    /// HTTPS): handshake, GET /1.0, exec, the list of `--https-list`
    /// stopped instances, then image copies between daemons (see `https.rs`).
    #[arg(long, conflicts_with_all = ["only_density", "only_storage", "only_scale", "only_transfer", "only_soak", "only_kill_soak", "only_load", "baseline_kanted"])]
    only_https: bool,
    /// Only moves between two lab hosts (`kante lab`): the Debian image's
    /// instance moved back and forth `--move-rounds` times each way, on dir
    /// and on btrfs, then copied and refreshed (see `moves.rs`). With
    /// `--lxd`, the same between two private LXDs in the lab's hosts
    /// (`moves_lxd.rs`; the host's LXD is not used).
    #[arg(long, conflicts_with_all = ["only_density", "only_storage", "only_scale", "only_transfer", "only_soak", "only_kill_soak", "only_load", "only_https", "baseline_kanted"])]
    only_move: bool,
    #[arg(long, default_value_t = 3)]
    move_rounds: usize,
    /// Only the cluster figures on a 3-host lab cluster (see `cluster.rs`):
    /// lists with `--cluster-instances` instances per member, placed
    /// launches, a member's death and etcd's return, `--cluster-runs`
    /// times. Kante only.
    #[arg(long, conflicts_with_all = ["only_density", "only_storage", "only_scale", "only_transfer", "only_soak", "only_kill_soak", "only_load", "only_https", "only_move", "baseline_kanted", "lxd", "install_lxd"])]
    only_cluster: bool,
    #[arg(long, default_value_t = 100)]
    cluster_instances: usize,
    /// Only the overlay figures on a 2-host lab cluster (see `overlay.rs`):
    /// iperf3 throughput and ping round trips between two containers on
    /// the uplink, a plain overlay and an encrypted one, `--overlay-runs`
    /// times. Kante only.
    #[arg(long, conflicts_with_all = ["only_density", "only_storage", "only_scale", "only_transfer", "only_soak", "only_kill_soak", "only_load", "only_https", "only_move", "only_cluster", "baseline_kanted", "lxd", "install_lxd"])]
    only_overlay: bool,
    #[arg(long, default_value_t = 3)]
    overlay_runs: usize,
    #[arg(long, default_value_t = 5)]
    cluster_runs: usize,
    /// Only the site figures on a 3-host lab (see `site.rs`): seed 000's
    /// edge lab from empty to a ready swarm and again with no change, by
    /// `kante apply` and by an Ansible playbook, `--site-runs` times.
    #[arg(long, conflicts_with_all = ["only_density", "only_storage", "only_scale", "only_transfer", "only_soak", "only_kill_soak", "only_load", "only_https", "only_move", "only_cluster", "only_overlay", "baseline_kanted", "lxd", "install_lxd"])]
    only_site: bool,
    #[arg(long, default_value_t = 2)]
    site_runs: usize,
    /// Only the networking figures (see `net.rs`): start → first DHCP
    /// lease, starts with 1 and 3 NICs, and the proxy device's bulk and
    /// round trips beside a direct connection, `--runs` times.
    #[arg(long, conflicts_with_all = ["only_density", "only_storage", "only_scale", "only_transfer", "only_soak", "only_kill_soak", "only_load", "only_https", "only_move", "no_dhcp"])]
    only_net: bool,
    /// Rounds of the HTTPS figures.
    #[arg(long, default_value_t = 30)]
    https_rounds: usize,
    /// Stopped instances for the list over HTTPS.
    #[arg(long, default_value_t = 100)]
    https_list: usize,
    /// Cycles of the leak-accounting soak.
    #[arg(long, default_value_t = 1000)]
    soak_cycles: usize,
    /// File transfers per size (4 KiB, and a fifth as many of 64 MiB).
    #[arg(long, default_value_t = 50)]
    file_runs: usize,
    /// Also run a second Kante from this kanted binary (say, an older
    /// build), as target `kante-base`, in `<dir>-base`.
    #[arg(long)]
    baseline_kanted: Option<PathBuf>,
    /// Where Kante keeps its state during the run.
    #[arg(long, default_value = "/var/tmp/kante-bench")]
    dir: PathBuf,
    /// Raw figures as JSON.
    #[arg(long, default_value = "bench-results.json")]
    json: PathBuf,
}

/// One list-at-scale count; an empty value stands for none.
fn list_count(s: &str) -> Result<Option<usize>, std::num::ParseIntError> {
    if s.is_empty() {
        Ok(None)
    } else {
        s.parse().map(Some)
    }
}

pub(crate) const PREFIX: &str = "bench-";

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.image.exists(),
        "{} not found: build it with `kante image build debian/12`",
        args.image.display()
    );
    if args.only_move {
        if args.install_lxd {
            // Its own LXDs: the package only, not the host's daemon.
            target::install_lxd_package()?;
        }
        let mut r = Results::default();
        let plan = moves::Plan {
            rounds: args.move_rounds,
            image: args.image.clone(),
            lxd: args.lxd || args.install_lxd,
        };
        moves::run(&plan, &mut r).await.context("moves")?;
        let mut names = vec!["kante".to_string()];
        if plan.lxd {
            names.push("lxd".into());
        }
        println!("{}", machine_line());
        println!();
        println!("{}", report::table(&r, &names));
        std::fs::write(&args.json, serde_json::to_vec_pretty(&r)?)?;
        return Ok(());
    }
    if args.install_lxd {
        target::install_lxd().await?;
    }
    if args.only_overlay {
        let mut r = Results::default();
        let plan = overlay::Plan {
            runs: args.overlay_runs,
            busybox: args.busybox.clone(),
        };
        overlay::run(&plan, &mut r).await.context("overlay")?;
        println!("{}", machine_line());
        println!();
        println!("{}", report::table(&r, &["kante".to_string()]));
        std::fs::write(&args.json, serde_json::to_vec_pretty(&r)?)?;
        return Ok(());
    }
    if args.only_cluster {
        let mut r = Results::default();
        let plan = cluster::Plan {
            per_member: args.cluster_instances,
            runs: args.cluster_runs,
            busybox: args.busybox.clone(),
        };
        cluster::run(&plan, &mut r).await.context("cluster")?;
        println!("{}", machine_line());
        println!();
        println!("{}", report::table(&r, &["kante".to_string()]));
        std::fs::write(&args.json, serde_json::to_vec_pretty(&r)?)?;
        return Ok(());
    }
    if args.only_site {
        let mut r = Results::default();
        let plan = site::Plan {
            runs: args.site_runs,
        };
        site::run(&plan, &mut r).await.context("site")?;
        println!("{}", machine_line());
        println!();
        let names = ["kante apply".to_string(), "ansible".to_string()];
        println!("{}", report::table(&r, &names));
        std::fs::write(&args.json, serde_json::to_vec_pretty(&r)?)?;
        return Ok(());
    }
    if args.only_kill_soak {
        let r = soak::kill(args.soak_rounds).await?;
        println!("{}", machine_line());
        println!();
        println!("{}", report::table(&r, &["kante".to_string()]));
        std::fs::write(&args.json, serde_json::to_vec_pretty(&r)?)?;
        return Ok(());
    }
    let mut targets = vec![Target::kante(&args.dir).await?];
    if let Some(base) = &args.baseline_kanted {
        let dir = args.dir.with_extension("base");
        targets.push(Target::kante_from(base, &dir, "kante-base").await?);
    }
    if args.lxd || args.install_lxd {
        match Target::lxd().await {
            Some(t) => targets.push(t),
            None => {
                eprintln!("LXD is not answering on /var/lib/lxd/unix.socket: Kante's figures only")
            }
        }
    }
    let mut r = Results::default();
    let result = run_all(&args, &mut targets, &mut r).await;
    let names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
    for t in targets {
        t.shutdown(PREFIX).await;
    }
    result?;
    println!("{}", machine_line());
    println!("{}", limits_line());
    println!();
    println!("{}", report::table(&r, &names));
    std::fs::write(&args.json, serde_json::to_vec_pretty(&r)?)?;
    eprintln!("raw figures: {}", args.json.display());
    Ok(())
}

async fn run_all(args: &Args, targets: &mut [Target], r: &mut Results) -> Result<()> {
    for t in targets.iter_mut() {
        t.clean(PREFIX).await;
        t.import(&args.image).await?;
        let pid = t.daemon_pid().await;
        r.add("daemon RSS, idle", &t.name, "B", proc::rss(pid) as f64);
    }
    if args.only_load {
        let plan = load::Plan {
            clients: args.load_clients,
            seconds: args.load_seconds,
            busybox: args.busybox.clone(),
        };
        return load::run(targets, &plan, r).await.context("load");
    }
    if args.only_https {
        let plan = https::Plan {
            rounds: args.https_rounds,
            list: args.https_list,
            busybox: args.busybox.clone(),
            image: args.image.clone(),
        };
        return https::run(targets, &plan, r).await.context("https");
    }
    if args.only_net {
        return net::dhcp_lease(args.runs, targets, r)
            .await
            .context("network");
    }
    if args.only_soak {
        let plan = soak::Plan {
            cycles: args.soak_cycles,
            busybox: args.busybox.clone(),
        };
        return soak::run(targets, &plan, r).await.context("soak");
    }
    if args.only_transfer {
        let plan = transfer::Plan {
            execs: args.exec_runs,
            small: args.file_runs,
            large: args.file_runs.div_ceil(5),
        };
        return transfer::run(targets, &plan, r).await.context("transfer");
    }
    if args.only_scale {
        for t in targets.iter_mut() {
            list_at_scale(args, t, r)
                .await
                .with_context(|| format!("list at scale on {}", t.name))?;
        }
    } else if !args.only_density {
        if args.storage_runs > 0 {
            storage::run(targets, args.storage_runs, r)
                .await
                .context("storage scenarios")?;
        }
        if args.only_storage {
            return Ok(());
        }
        lifecycle_and_more(args, targets, r).await?;
    }
    let cfg = density::Config {
        budget: (args.density_budget_gib * (1u64 << 30) as f64) as u64,
        max: args.density_max,
        pool: args.density_pool,
    };
    density::run(targets, &cfg, r).await.context("density")
}

/// Lifecycle, exec, DHCP, list-at-scale and many-instances figures.
async fn lifecycle_and_more(args: &Args, targets: &mut [Target], r: &mut Results) -> Result<()> {
    let ready = Duration::from_secs(120);
    let per_run_exec = args.exec_runs.div_ceil(args.runs.max(1));
    for i in 0..args.runs {
        // Alternate which daemon goes first so drift hits both alike.
        let order: Vec<usize> = if i % 2 == 0 {
            (0..targets.len()).collect()
        } else {
            (0..targets.len()).rev().collect()
        };
        for &k in &order {
            let t = &targets[k];
            let name = format!("{PREFIX}l{i}");
            let t0 = Instant::now();
            t.create(&name).await?;
            let created = t0.elapsed();
            t.client.start_instance(&name).await?;
            t.wait_ready(&name, ready).await?;
            r.add("launch → running", &t.name, "s", t0.elapsed().as_secs_f64());
            r.add("  of which create", &t.name, "s", created.as_secs_f64());
            for _ in 0..per_run_exec {
                let t1 = Instant::now();
                let o = t.client.exec_capture(&name, &["true"], &[], None).await?;
                anyhow::ensure!(o.code == 0, "exec true failed on {}", t.name);
                r.add(
                    "exec `true` round trip",
                    &t.name,
                    "s",
                    t1.elapsed().as_secs_f64(),
                );
            }
            let t2 = Instant::now();
            t.client.stop_instance(&name, false, 60).await?;
            r.add("stop (clean)", &t.name, "s", t2.elapsed().as_secs_f64());
            let t3 = Instant::now();
            t.client.start_instance(&name).await?;
            t.wait_ready(&name, ready).await?;
            r.add("start → running", &t.name, "s", t3.elapsed().as_secs_f64());
            t.client.stop_instance(&name, true, -1).await?;
            let t4 = Instant::now();
            t.client.delete_instance(&name).await?;
            r.add("delete", &t.name, "s", t4.elapsed().as_secs_f64());
        }
    }
    let plan = transfer::Plan {
        execs: 0,
        small: args.file_runs,
        large: args.file_runs.div_ceil(5),
    };
    transfer::run(targets, &plan, r)
        .await
        .context("file transfer")?;
    if !args.no_dhcp {
        net::dhcp_lease(args.runs, targets, r)
            .await
            .context("time to first DHCP lease")?;
    }
    for t in targets.iter_mut() {
        list_at_scale(args, t, r)
            .await
            .with_context(|| format!("list at scale on {}", t.name))?;
    }
    for t in targets.iter() {
        many_instances(args, t, r)
            .await
            .with_context(|| format!("{} instances on {}", args.instances, t.name))?;
        t.clean(PREFIX).await;
    }
    Ok(())
}

/// List latency with many (stopped) busybox instances.
async fn list_at_scale(args: &Args, t: &mut Target, r: &mut Results) -> Result<()> {
    if args.list_counts.iter().flatten().next().is_none() || !args.busybox.exists() {
        return Ok(());
    }
    let debian = t.fingerprint.clone();
    t.import(&args.busybox).await?;
    let mut made = 0;
    for &n in args.list_counts.iter().flatten() {
        while made < n {
            t.create_bare(&format!("{PREFIX}s{made}")).await?;
            made += 1;
        }
        for _ in 0..5 {
            // The daemon's share alone (whole body received), then the same
            // request decoded into typed instances as `kante list` does.
            let t0 = Instant::now();
            let body = t.client.get_body("/1.0/instances?recursion=1").await?;
            r.add(
                &format!("GET /1.0/instances?recursion=1 ({n} stopped), body"),
                &t.name,
                "s",
                t0.elapsed().as_secs_f64(),
            );
            anyhow::ensure!(body.len() > n * 100, "{}: short list body", t.name);
            let t1 = Instant::now();
            let listed = t.client.instances().await?;
            r.add(
                &format!("GET /1.0/instances?recursion=1 ({n} stopped), decoded"),
                &t.name,
                "s",
                t1.elapsed().as_secs_f64(),
            );
            anyhow::ensure!(
                listed.len() >= n,
                "{}: listed {} of {n}",
                t.name,
                listed.len()
            );
            let t2 = Instant::now();
            let _ = t.client.instances_full().await?;
            r.add(
                &format!("GET /1.0/instances?recursion=2 ({n} stopped)"),
                &t.name,
                "s",
                t2.elapsed().as_secs_f64(),
            );
        }
    }
    t.clean(PREFIX).await;
    t.fingerprint = debian;
    Ok(())
}

/// Memory and list figures with `args.instances` idle instances running.
async fn many_instances(args: &Args, t: &Target, r: &mut Results) -> Result<()> {
    let n = args.instances;
    let pid = t.daemon_pid().await;
    let before_avail = proc::mem_available();
    let names: Vec<String> = (0..n).map(|i| format!("{PREFIX}m{i}")).collect();
    let t0 = Instant::now();
    for name in &names {
        t.create(name)
            .await
            .with_context(|| format!("creating {name}"))?;
        t.client
            .start_instance(name)
            .await
            .with_context(|| format!("starting {name}"))?;
    }
    for name in &names {
        t.wait_ready(name, Duration::from_secs(180)).await?;
    }
    r.add(
        &format!("launch {n} in sequence → all running"),
        &t.name,
        "s",
        t0.elapsed().as_secs_f64(),
    );
    // Let boot-time spikes settle before reading memory.
    tokio::time::sleep(Duration::from_secs(10)).await;
    r.add(
        &format!("daemon RSS, {n} running"),
        &t.name,
        "B",
        proc::rss(pid) as f64,
    );
    let monitors = proc::pids_matching(t.monitor_needle);
    let monitor_pss: u64 = monitors.iter().map(|p| proc::pss(*p)).sum();
    let monitor_rss: u64 = monitors.iter().map(|p| proc::rss(*p)).sum();
    r.add(
        "host-side overhead per instance (monitor PSS)",
        &t.name,
        "B",
        monitor_pss as f64 / n as f64,
    );
    r.add(
        "host-side overhead per instance (monitor RSS)",
        &t.name,
        "B",
        monitor_rss as f64 / n as f64,
    );
    let after_avail = proc::mem_available();
    r.add(
        "free-memory drop per instance",
        &t.name,
        "B",
        before_avail.saturating_sub(after_avail) as f64 / n as f64,
    );
    for name in &names {
        let st = t
            .client
            .instance_state(name)
            .await
            .with_context(|| format!("state of {name}"))?;
        r.add(
            "instance cgroup memory charge",
            &t.name,
            "B",
            st.memory.usage as f64,
        );
    }
    for _ in 0..10 {
        let t1 = Instant::now();
        let _ = t.client.instances_full().await.context("listing")?;
        r.add(
            &format!("GET /1.0/instances?recursion=2 ({n})"),
            &t.name,
            "s",
            t1.elapsed().as_secs_f64(),
        );
    }
    Ok(())
}

fn machine_line() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| t.lines().next().map(str::to_string))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "Machine: {cpus} CPUs, {}, kernel {}",
        mem.split_whitespace().skip(1).collect::<Vec<_>>().join(" "),
        kernel.trim()
    )
}

fn limits_line() -> String {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into())
    };
    format!(
        "Host limits: fs.inotify.max_user_instances={} fs.inotify.max_user_watches={} kernel.keys.maxkeys={}",
        read("/proc/sys/fs/inotify/max_user_instances"),
        read("/proc/sys/fs/inotify/max_user_watches"),
        read("/proc/sys/kernel/keys/maxkeys")
    )
}
