//! Images between cluster members on the lab (`Lab::up(3)`, made a
//! 3-member cluster by `kante cluster enable`/`add`/`join`): an image
//! imported on h1 only is listed by every member (the index is shared),
//! and a create targeted at a member without its files fetches them from
//! h1 over the members' HTTPS. With h1's kanted stopped (SIGSTOP), a
//! targeted create on h3 fails fast with one line naming the image and
//! leaves no file in h3's image store; so does one whose only holder's
//! file no longer hashes to the fingerprint. Then, h1 back, `kante launch bb c1
//! --target h2` through h1 runs c1 on h2 (exec shows it), and h2's store
//! holds the image's file, whose sha256 is the fingerprint; two creates
//! on h3 at once fetch the image once; a split image imported on h1
//! later reaches h3 as its two files, and h2 when Debian's `lxc launch
//! --target h2` asks h1 for it. The lab goes down leaving nothing.

use std::time::{Duration, Instant};

use kante_integration::cluster::{await_state, down_and_check, form, holds, on, text};
use kante_integration::lab::Lab;
use kante_integration::{run, TestImage};

/// The names in host i's image store (`KANTE_DIR/images`), sorted.
fn store(lab: &Lab, i: u32) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(lab.state(i).join("images"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n != ".uploads")
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// sha256 of a file, by `sha256sum`.
fn sha256(path: &std::path::Path) -> String {
    let o = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    assert!(o.status.success(), "sha256sum: {}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Waits until host i sees every member ONLINE (bounded).
fn all_online(lab: &Lab, i: u32) {
    for j in 1..=3 {
        await_state(lab, i, &format!("h{j}"), "ONLINE", Duration::from_secs(30));
    }
}

#[test]
fn a_targeted_create_fetches_the_image_from_a_member() {
    run(async {
        let mut lab = Lab::up(3);
        let fp = lab.import(1, TestImage::Busybox).await;
        let short = &fp[..12];
        on(&lab, 1, &["image", "alias", "create", "bb", &fp]);
        form(&lab);
        assert_eq!(store(&lab, 1), vec![fp.clone()]);
        for i in 2..=3 {
            assert!(store(&lab, i).is_empty(), "h{i}: {:?}", store(&lab, i));
            // Every member lists the cluster's images, files or not.
            let listed = on(&lab, i, &["image", "list", "-f", "csv"]);
            assert!(
                listed.contains(short) && listed.contains("bb"),
                "h{i}'s image list: {listed}"
            );
        }

        // The only holder stopped: a create on h3 (asked through h2) fails
        // fast with one line naming the image, and leaves no file.
        let h1 = lab.pid(1);
        // SAFETY: a signal to the lab's own daemon.
        assert_eq!(unsafe { libc::kill(h1, libc::SIGSTOP) }, 0);
        let start = Instant::now();
        let o = lab.host_kante(2, &["launch", "bb", "cx", "--target", "h3"]);
        let took = start.elapsed();
        // SAFETY: as above.
        assert_eq!(unsafe { libc::kill(h1, libc::SIGCONT) }, 0);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(
            !o.status.success(),
            "a create without a reachable holder succeeded"
        );
        assert!(took < Duration::from_secs(15), "took {took:?}: {err}");
        assert!(
            err.starts_with("Error: ") && err.trim_end().lines().count() == 1,
            "{err}"
        );
        assert!(err.contains(short), "the error names no image: {err}");
        eprintln!("without a holder ({took:?}): {err}");
        assert!(store(&lab, 3).is_empty(), "h3 kept {:?}", store(&lab, 3));
        assert!(!holds(&lab, 3, "cx"), "cx left on h3");
        for i in 1..=3 {
            all_online(&lab, i);
        }
        let names = on(&lab, 2, &["list", "-f", "csv", "-c", "n"]);
        assert!(!names.lines().any(|l| l == "cx"), "cx listed: {names}");

        // A holder whose file no longer hashes to the fingerprint (the
        // same image compressed otherwise): refused, nothing kept.
        let held = lab.state(1).join("images").join(&fp);
        let good = std::fs::read(&held).unwrap();
        let other = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "zstd -dc '{}' | gzip -c",
                TestImage::Busybox.path().display()
            ))
            .output()
            .unwrap();
        assert!(other.status.success() && other.stdout.len() > 1000);
        std::fs::write(&held, &other.stdout).unwrap();
        let o = lab.host_kante(2, &["launch", "bb", "cy", "--target", "h3"]);
        std::fs::write(&held, &good).unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!o.status.success(), "a create from a bad copy succeeded");
        assert!(
            err.starts_with("Error: ") && err.trim_end().lines().count() == 1,
            "{err}"
        );
        assert!(
            err.contains(short) && err.contains("h1") && err.contains("mismatch"),
            "{err}"
        );
        eprintln!("from a bad copy: {err}");
        assert!(store(&lab, 3).is_empty(), "h3 kept {:?}", store(&lab, 3));
        assert!(!holds(&lab, 3, "cy"), "cy left on h3");

        // h1 back: a launch on h2 through h1 fetches the files and runs.
        on(&lab, 1, &["launch", "bb", "c1", "--target", "h2"]);
        assert!(holds(&lab, 2, "c1") && !holds(&lab, 1, "c1"));
        let host = on(&lab, 1, &["exec", "c1", "--", "hostname"]);
        assert_eq!(host.trim(), "c1");
        let own = on(&lab, 2, &["list", "-f", "csv", "-c", "nsL"]);
        assert!(own.contains("c1,RUNNING,h2"), "h2's own list: {own}");
        assert_eq!(store(&lab, 2), vec![fp.clone()]);
        assert_eq!(sha256(&lab.state(2).join("images").join(&fp)), fp);
        assert!(
            lab.log(2).contains("image files fetched from a member"),
            "{}",
            lab.log(2)
        );

        // Two creates on h3 at once: one fetch, one stored file.
        let fetching = "fetching an image's files from a member";
        let before = lab.log(3).matches(fetching).count();
        let outs: Vec<_> = std::thread::scope(|s| {
            let lab = &lab;
            let a = s.spawn(move || lab.host_kante(1, &["launch", "bb", "c3a", "--target", "h3"]));
            let b = s.spawn(move || lab.host_kante(2, &["launch", "bb", "c3b", "--target", "h3"]));
            vec![a.join().unwrap(), b.join().unwrap()]
        });
        for o in &outs {
            assert!(o.status.success(), "concurrent launch: {}", text(o));
        }
        for n in ["c3a", "c3b"] {
            let host = on(&lab, 2, &["exec", n, "--", "hostname"]);
            assert_eq!(host.trim(), n);
            assert!(holds(&lab, 3, n), "{n} not on h3");
        }
        assert_eq!(store(&lab, 3), vec![fp.clone()]);
        assert_eq!(sha256(&lab.state(3).join("images").join(&fp)), fp);
        let fetches = lab.log(3).matches(fetching).count() - before;
        assert_eq!(fetches, 1, "h3 fetched {fetches} times");

        // A split image (metadata and rootfs files), imported on h1 once
        // the cluster is formed: both files travel to h3.
        let work = tempfile::tempdir().unwrap();
        let w = work.path().display();
        let script = format!(
            "mkdir {w}/t && tar --zstd -xf '{img}' -C {w}/t --numeric-owner \
             && echo split-marker > {w}/t/rootfs/etc/marker \
             && tar -C {w}/t --numeric-owner -cJf {w}/meta.tar.xz metadata.yaml templates \
             && tar -C {w}/t/rootfs --numeric-owner -cJf {w}/root.tar.xz . && rm -rf {w}/t",
            img = TestImage::Busybox.path().display()
        );
        let o = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert!(o.status.success(), "making a split image: {}", text(&o));
        let (meta, root) = (format!("{w}/meta.tar.xz"), format!("{w}/root.tar.xz"));
        let out = on(&lab, 1, &["image", "import", &meta, &root, "--alias", "sb"]);
        let sfp = out
            .split("fingerprint: ")
            .nth(1)
            .map(|f| f.trim().to_string())
            .unwrap_or_else(|| panic!("no fingerprint in {out:?}"));
        on(&lab, 2, &["launch", "sb", "s3", "--target", "h3"]);
        let marker = on(&lab, 2, &["exec", "s3", "--", "cat", "/etc/marker"]);
        assert_eq!(marker, "split-marker\n");
        let split = [sfp.clone(), format!("{sfp}.rootfs")];
        assert!(
            split.iter().all(|f| store(&lab, 3).contains(f)),
            "h3's store: {:?}",
            store(&lab, 3)
        );
        let images = lab.state(3).join("images");
        let both = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "cat '{0}/{sfp}' '{0}/{sfp}.rootfs' | sha256sum",
                images.display()
            ))
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&both.stdout).starts_with(&sfp),
            "h3's split files do not hash to {sfp}: {}",
            text(&both)
        );

        // Debian's lxc, through h1, on h2 (which lacks the split image).
        let home = tempfile::tempdir().unwrap();
        let o = std::process::Command::new("timeout")
            .args(["60", "lxc", "launch", "sb", "lx2", "--target", "h2"])
            .env("LXD_DIR", lab.state(1))
            .env("LXD_CONF", home.path().join("conf"))
            .env("HOME", home.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success(), "lxc launch --target h2: {}", text(&o));
        assert!(holds(&lab, 2, "lx2"), "lx2 not on h2");
        let marker = on(&lab, 1, &["exec", "lx2", "--", "cat", "/etc/marker"]);
        assert_eq!(marker, "split-marker\n");
        assert!(
            split.iter().all(|f| store(&lab, 2).contains(f)),
            "h2's store: {:?}",
            store(&lab, 2)
        );

        for n in ["c1", "c3a", "c3b", "s3", "lx2"] {
            on(&lab, 1, &["delete", n, "--force"]);
        }
        down_and_check(&mut lab, Vec::new());
    });
}
