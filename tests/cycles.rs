//! 200 create/start/stop/delete cycles leave nothing behind.

use kante_integration::{leaks_of, run, Daemon, TestImage};

#[test]
fn two_hundred_cycles_leave_nothing_behind() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        let cycles: usize = std::env::var("KANTE_CYCLES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200);
        let t0 = std::time::Instant::now();
        for i in 0..cycles {
            let name = format!("cyc{}", i % 3);
            d.launch(&fp, &name, &[]).await;
            let out = d
                .client
                .exec_capture(&name, &["true"], &[], None)
                .await
                .unwrap();
            assert_eq!(out.code, 0);
            d.client.stop_instance(&name, i % 2 == 0, 10).await.unwrap();
            d.client.delete_instance(&name).await.unwrap();
            if i % 50 == 49 {
                // Nothing accumulates while the daemon runs either.
                let leaks = leaks_of(&d.dir, &d.cgroup_prefix());
                assert!(leaks.is_empty(), "after {} cycles: {leaks:#?}", i + 1);
            }
        }
        eprintln!("{cycles} cycles in {:?}", t0.elapsed());
        assert!(
            d.client.instance_names().await.unwrap().is_empty(),
            "database rows left"
        );
        let containers = std::fs::read_dir(d.dir.join("storage-pools/default/containers"))
            .unwrap()
            .count();
        assert_eq!(containers, 0, "instance volumes left");
        let runtime_dirs = std::fs::read_dir(d.dir.join("logs")).unwrap().count();
        assert_eq!(runtime_dirs, 0, "runtime directories left");
        d.shutdown().await;
    });
}
