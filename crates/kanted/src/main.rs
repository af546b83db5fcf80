//! kanted: the Kante daemon. Serves the LXD-compatible API on
//! `$KANTE_DIR/unix.socket` and runs the engine. Containers are supervised
//! by per-container monitors (this same binary, `kanted __monitor`), so they
//! keep running when the daemon stops or crashes.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use kante_engine::{Engine, EngineConfig};
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
}

fn main() {
    // The monitor must stay single-threaded (it forks into namespaces), so it
    // is dispatched before any runtime or thread exists.
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("__monitor") {
        let Some(spec) = argv.get(2) else {
            eprintln!("usage: kanted __monitor <spec.json>");
            std::process::exit(2);
        };
        std::process::exit(kante_runtime::monitor::monitor_main(std::path::Path::new(
            spec,
        )));
    }
    let args = Args::parse();
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
}

async fn run(args: Args) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("kanted must run as root");
    }
    kante_engine::host::raise_limits();
    if kante_engine::host::raise_nofile().is_none() {
        tracing::warn!("could not raise the open-file limit");
    }
    let exe = std::env::current_exe().context("locating the kanted binary")?;
    let runtime = Arc::new(LinuxRuntime::new(exe).context("setting up the container runtime")?);
    let engine = Engine::open(
        EngineConfig {
            kante_dir: args.dir.clone(),
        },
        runtime,
    )
    .await
    .context("opening the state")?;
    let socket = engine.paths.socket();
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
    kante_http::serve_unix(engine.clone(), &socket, shutdown)
        .await
        .context("serving the API")?;
    engine.shutdown();
    let _ = std::fs::remove_file(&socket);
    Ok(())
}
