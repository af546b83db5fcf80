//! 200 concurrent API clients (issue 20): lists, state reads, execs, their
//! own instances' lifecycles and bad requests, all at once, a few rounds
//! each (`kante_integration::load`). Every good request succeeds, every bad
//! one gets its 4xx, nothing gets a 5xx or a dropped connection, and what
//! the clients made is gone afterwards. Latencies are the benchmark's
//! (`kante-bench --only-load`), not asserted here.

use std::time::Duration;

use kante_integration::load::{load, LoadConfig};
use kante_integration::{run, Daemon, TestImage};

#[test]
fn two_hundred_clients_at_once_get_only_the_answers_they_should() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        let running: Vec<String> = (0..3).map(|i| format!("busy{i}")).collect();
        for n in &running {
            d.launch(&fp, n, &[]).await;
        }
        let cfg = LoadConfig {
            clients: 200,
            rounds: 3,
            duration: Duration::from_secs(600),
            running: running.clone(),
            fingerprint: fp.clone(),
            lifecycle_every: 20,
            pool: "default".into(),
            prefix: "load".into(),
        };
        let report = load(&d.client, cfg).await;
        eprintln!(
            "{} requests in {:?}; exec p99 {:?}",
            report.requests(),
            report.elapsed,
            report.percentile("exec true", 99.0)
        );
        assert!(report.errors.is_empty(), "{:#?}", report.errors);
        // 200 clients × 3 rounds × 5 requests, and 10 lifecycles a round.
        assert_eq!(report.requests(), 200 * 3 * 5 + 10 * 3);
        let mut names = d.client.instance_names().await.unwrap();
        names.sort();
        assert_eq!(names, running, "the clients' own instances are gone");
        d.shutdown().await;
    });
}
