//! kanted: the Kante daemon. Serves the LXD-compatible API on
//! `$KANTE_DIR/unix.socket` and runs the engine. Containers are supervised
//! by per-container monitors (this same binary, `kanted __monitor`), so they
//! keep running when the daemon stops or crashes.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use kante_engine::{Engine, EngineConfig, HostDeps};
use kante_runtime::LinuxRuntime;

#[derive(Parser, Debug)]
#[command(name = "kanted", version, about = "The Kante system-container daemon")]
struct Args {
    /// State directory (also from KANTE_DIR).
    #[arg(long, env = "KANTE_DIR", default_value = "/var/lib/kante")]
    dir: PathBuf,
    /// Log at debug level (RUST_LOG overrides).
    #[arg(long)]
    debug: bool,
    /// Print the OpenAPI description of the API (docs/openapi.json) and exit.
    #[arg(long)]
    openapi: bool,
}

fn main() {
    // The monitor must stay single-threaded (it forks into namespaces), so it
    // is dispatched before any runtime or thread exists.
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("__fileio") {
        let userns = argv.get(2).map(String::as_str) == Some("userns");
        std::process::exit(kante_runtime::fileserver::serve_main(userns));
    }
    if argv.get(1).map(String::as_str) == Some("__monitor") {
        let Some(spec) = argv.get(2) else {
            eprintln!("usage: kanted __monitor <spec.json>");
            std::process::exit(2);
        };
        std::process::exit(kante_runtime::monitor::monitor_main(std::path::Path::new(
            spec,
        )));
    }
    // Whatever the launcher left open (a shell's pipe, a supervisor's
    // socket, the lock `flock(1)` held for it) must reach no monitor,
    // dnsmasq or guest, nor stay held for the daemon's life (a caller
    // waiting for a pipe's end, or for its lock, would wait forever): every
    // fd but stdio is closed before the daemon opens anything of its own.
    close_inherited_fds();
    let args = Args::parse();
    if args.openapi {
        print!("{}", kante_http::openapi::document_text());
        return;
    }
    // glibc gives every thread that allocates its own arena; the blocking pool's
    // threads would each keep one resident. Two arenas are plenty for a daemon.
    // SAFETY: mallopt before any other thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| {
        if args.debug {
            "debug".into()
        } else {
            "info".into()
        }
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = rt.block_on(run(args)) {
        tracing::error!("{e:#}");
        eprintln!("Error: {e:#}");
        std::process::exit(1);
    }
    // Leave now, without dropping the runtime: dropping it would run the
    // undo of operations still in flight while their blocking work (a copy,
    // an unpack) went on and finished after it. Ending here interrupts them
    // as a crash does (their helpers die with the process), and the next
    // start's reconciliation removes what they left.
    std::process::exit(0);
}

/// Closes every fd >= 3 (`close_range`, Linux 5.9; older kernels: one
/// `close` per fd listed in /proc/self/fd).
fn close_inherited_fds() {
    // SAFETY: nothing of this process uses an fd above stdio yet (called
    // first in main, before any thread, runtime or file exists).
    let r = unsafe { libc::close_range(3, libc::c_uint::MAX, 0) };
    if r == 0 {
        return;
    }
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd >= 3)
        .collect();
    for fd in fds {
        // SAFETY: as above; the listing's own fd is already closed, and
        // closing it again just fails.
        unsafe { libc::close(fd) };
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("kanted must run as root");
    }
    kante_engine::host::raise_limits();
    if kante_engine::host::raise_nofile().is_none() {
        tracing::warn!("could not raise the open-file limit");
    }
    // The socket first: a stale one (left by a killed daemon) refuses
    // connections, so it is replaced by a live one before the (possibly
    // long) opening of the state; requests wait in its backlog until the
    // API answers them. `kante wait-ready` waits for that answer.
    let socket = kante_engine::Paths::new(&args.dir).socket();
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&args.dir)
            .with_context(|| format!("creating {}", args.dir.display()))?;
    }
    let listener = kante_http::claim_socket(&socket)
        .await
        .with_context(|| format!("binding {}", socket.display()))?;
    let engine = match open_engine(&args).await {
        Ok(engine) => engine,
        Err(e) => {
            let _ = std::fs::remove_file(&socket);
            return Err(e);
        }
    };
    tracing::info!(dir = %args.dir.display(), socket = %socket.display(), "kanted ready");
    let shutdown = async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    kante_http::serve_listener(engine.clone(), listener, shutdown)
        .await
        .context("serving the API")?;
    // Containers outlive the daemon, but not the host: at a poweroff or
    // reboot they are stopped cleanly now, to start again at boot.
    if kante_engine::host::host_is_stopping() {
        engine.stop_all_for_host_shutdown().await;
    }
    // Offline at once for the other members; this host's etcd stopped.
    engine.cluster_shutdown().await;
    engine.shutdown();
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

async fn open_engine(args: &Args) -> anyhow::Result<Arc<Engine>> {
    let exe = std::env::current_exe().context("locating the kanted binary")?;
    let runtime = Arc::new(LinuxRuntime::new(exe).context("setting up the container runtime")?);
    let host = HostDeps::system(runtime).context("opening the host's network interface")?;
    let engine = Engine::open(
        EngineConfig {
            kante_dir: args.dir.clone(),
        },
        host,
    )
    .await
    .context("opening the state")?;
    Ok(engine)
}
