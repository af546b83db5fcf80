//! Hostile guests (issue 20): root inside a container tries to reach the
//! host, or to stall or bloat the daemon, through Kante's own paths —
//! template targets the daemon writes into a copy, `..` in file paths, a
//! pid-exhausted guest the daemon must still exec into and stop, a huge
//! sparse file pulled out. Each is checked from outside: no host file is
//! touched, the daemon keeps answering, and its memory does not follow the
//! guest's file sizes. (`security_guest.rs` holds the audit's attacks.)

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use kante_integration::{proc_status_number, run, Daemon, TestImage};

/// A host path no test made: the guest tries to have the daemon write it.
fn host_marker(tag: &str) -> std::path::PathBuf {
    let p = std::path::PathBuf::from(format!("/tmp/kante-hostile-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

/// `GET /1.0` answers within a few seconds (a hang is the failure).
async fn answers(d: &Daemon, what: &str) {
    let t = tokio::time::timeout(Duration::from_secs(10), d.client.get("/1.0")).await;
    assert!(
        matches!(t, Ok(Ok(_))),
        "the daemon stopped answering {what}"
    );
}

#[test]
fn templates_applied_to_a_copy_stay_inside_it_and_cannot_block() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        d.launch(&fp, "evil", &[]).await;
        let marker = host_marker("tpl");
        // The copy's create/copy templates write /etc/hostname and
        // /etc/hosts: one becomes a link out of the root, the other a FIFO
        // that would block a plain open for writing.
        let (code, out) = d
            .sh(
                "evil",
                &format!(
                    "rm -f /etc/hostname /etc/hosts && ln -s /../../../../../..{} /etc/hostname && mkfifo /etc/hosts",
                    marker.display()
                ),
            )
            .await;
        assert_eq!(code, 0, "{out}");
        d.client.stop_instance("evil", true, -1).await.unwrap();
        let post = kante_api::instance::InstancesPost {
            name: "copy".into(),
            source: kante_api::instance::InstanceSource {
                kind: "copy".into(),
                source: "evil".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        let copied = tokio::time::timeout(Duration::from_secs(60), d.client.create_instance(&post))
            .await
            .expect("a FIFO at a template's target hung the copy");
        assert!(!marker.exists(), "the template was written on the host");
        answers(&d, "after the copy").await;
        copied.expect("a guest's own links in its root must not fail the copy");
        // The daemon's hostname write followed the link inside the copy.
        let inside = d
            .dir
            .join("storage-pools/default/containers/copy/rootfs")
            .join(marker.strip_prefix("/").unwrap());
        let text = std::fs::read_to_string(&inside).unwrap_or_default();
        assert_eq!(text.trim(), "copy", "the copy's hostname, inside it");
        // Its copy templates run at its first start: the FIFO at /etc/hosts
        // is refused at once, with the reason, and nothing is left running.
        let started =
            tokio::time::timeout(Duration::from_secs(60), d.client.start_instance("copy"))
                .await
                .expect("a FIFO at a template's target hung the start");
        let e = started.expect_err("a template was written into a FIFO");
        assert!(
            e.to_string().contains("Template for /etc/hosts")
                && e.to_string().contains("not a regular file"),
            "{e}"
        );
        assert_eq!(
            d.client.instance_state("copy").await.unwrap().status,
            "Stopped"
        );
        assert!(!marker.exists(), "the template was written on the host");
        d.client.delete_instance("copy").await.unwrap();

        // A device node there instead (/dev/zero's): the guest cannot make
        // one (mknod is refused to it), so the FIFO is its worst.
        d.client.start_instance("evil").await.unwrap();
        let (code, out) = d
            .sh(
                "evil",
                "rm -f /etc/hosts && mknod /etc/hosts c 1 5; ls -l /etc/hosts",
            )
            .await;
        assert!(out.contains("Operation not permitted"), "{code}: {out}");
        assert!(!out.contains("crw"), "a device node was made: {out}");
        d.client.stop_instance("evil", true, -1).await.unwrap();
        d.client.delete_instance("evil").await.unwrap();
        d.shutdown().await;
    });
}

#[test]
fn dot_dot_in_file_paths_stays_inside_the_guest() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        d.launch(&fp, "b1", &[]).await;
        let secret = host_marker("secret");
        std::fs::write(&secret, "host-secret\n").unwrap();
        let up = format!("/../../../../../../..{}", secret.display());
        // Refused as climbing out of the root, or looked up inside it
        // (where there is no such file): never the host's file.
        match d.client.file_get("b1", &up).await {
            Err(e) => assert!(matches!(e.status(), Some(400 | 404)), "{e}"),
            Ok(got) => panic!("a host file came out of the guest: {:?}", got.content),
        }
        let pushed = host_marker("pushed");
        let target = format!("/../../../../../../..{}", pushed.display());
        let push = d
            .client
            .file_push_bytes("b1", &target, "guest\n", &Default::default())
            .await;
        assert!(!pushed.exists(), "a push with .. wrote on the host");
        match push {
            Err(e) => assert_eq!(e.status(), Some(400), "{e}"),
            Ok(()) => {
                let (code, out) = d.sh("b1", &format!("cat {}", pushed.display())).await;
                assert_eq!(
                    (code, out.trim()),
                    (0, "guest"),
                    "the push landed in the guest"
                );
            }
        }
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "host-secret\n");
        std::fs::remove_file(&secret).unwrap();
        d.shutdown().await;
    });
}

#[test]
fn a_guest_out_of_pids_is_still_answered_exec_d_and_stopped() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        d.launch(&fp, "bomb", &[("limits.processes", "60")]).await;
        // Fill the pid limit with sleepers, from a detached shell.
        let (code, out) = d
            .sh(
                "bomb",
                "(while true; do sleep 1000 & done) >/dev/null 2>&1 & sleep 2; echo started",
            )
            .await;
        assert_eq!((code, out.trim()), (0, "started"), "{out}");
        answers(&d, "while the guest is out of pids").await;
        // exec may be refused (no pid left for it), but must answer, and
        // the guest's pid count stays at its limit.
        let t0 = Instant::now();
        let exec = tokio::time::timeout(
            Duration::from_secs(60),
            d.client.exec_capture("bomb", &["true"], &[], None),
        )
        .await
        .expect("exec into a pid-exhausted guest hung");
        eprintln!(
            "exec into the full guest: {:?} after {:?}",
            exec.as_ref().map(|o| o.code),
            t0.elapsed()
        );
        let state = d.client.instance_state("bomb").await.unwrap();
        assert!(
            state.processes >= 50 && state.processes <= 60,
            "the guest's processes: {}",
            state.processes
        );
        answers(&d, "after an exec into the full guest").await;
        d.client.stop_instance("bomb", true, -1).await.unwrap();
        assert_eq!(
            d.client.instance_state("bomb").await.unwrap().status,
            "Stopped"
        );
        d.shutdown().await;
    });
}

/// Counts what it is given and fails after `limit` bytes (the puller hangs up).
struct Meter {
    seen: u64,
    limit: u64,
}

impl tokio::io::AsyncWrite for Meter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.seen >= self.limit {
            return Poll::Ready(Err(std::io::Error::other("enough")));
        }
        self.seen += b.len() as u64;
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[test]
fn pulling_a_huge_sparse_file_streams_without_growing_the_daemon() {
    run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        d.launch(&fp, "b1", &[]).await;
        let (code, out) = d
            .sh("b1", "truncate -s 1099511627776 /huge && echo ok")
            .await;
        assert_eq!((code, out.trim()), (0, "ok"), "{out}");
        let before = proc_status_number(d.pid(), "VmRSS");
        let mut meter = Meter {
            seen: 0,
            limit: 512 << 20,
        };
        let pulled = tokio::time::timeout(
            Duration::from_secs(120),
            d.client.file_get_into("b1", "/huge", &mut meter),
        )
        .await
        .expect("the pull stalled");
        assert!(pulled.is_err(), "1 TiB came through in time?");
        assert!(meter.seen >= 512 << 20, "only {} bytes came", meter.seen);
        let after = proc_status_number(d.pid(), "VmRSS");
        assert!(
            after < before + 64 * 1024,
            "the daemon grew from {before} KiB to {after} KiB for a streamed file"
        );
        answers(&d, "after the pull was cut").await;
        d.shutdown().await;
    });
}
