//! The kill soak in the suite (issue 20): a few rounds of concurrent
//! creates, copies, snapshots, starts, deletes, backups and imports cut by
//! `kill -9` (and one by SIGTERM), each followed by a restart, the
//! consistency checks and a retry of the interrupted work
//! (`kante_integration::soak`). `KANTE_SOAK_ROUNDS` and `KANTE_SOAK_SEED`
//! change the run; `kante-bench --only-kill-soak` runs a long one.

use kante_integration::soak::{kill_soak, SoakConfig};
use kante_integration::{run, Daemon, TestImage};

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn work_cut_by_kill_or_sigterm_is_finished_or_gone_and_can_be_retried() {
    run(async {
        let mut d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        let work = tempfile::tempdir().unwrap();
        let seed = env_or(
            "KANTE_SOAK_SEED",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64,
        );
        let cfg = SoakConfig {
            rounds: env_or("KANTE_SOAK_ROUNDS", 6) as usize,
            seed,
            max_delay_ms: 1500,
            sigterm_every: 3,
        };
        let report = kill_soak(&mut d, &fp, work.path(), &cfg).await;
        eprintln!("{report:?}");
        assert_eq!(report.kills + report.terms, cfg.rounds);
        assert_eq!(report.recovery.len(), cfg.rounds);
        d.shutdown().await;
    });
}
