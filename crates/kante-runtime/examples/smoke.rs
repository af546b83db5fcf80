//! Manual smoke test of the runtime without the daemon:
//! `cargo run --example smoke -- <rootfs> [privileged]` starts a container,
//! waits for systemd, runs a command in it and stops it.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kante_runtime::exec::{ExecSpec, ExecStdio};
use kante_runtime::{ContainerSpec, IdMap, LinuxRuntime, Runtime, DEFAULT_CAP_DROP};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("__monitor") {
        std::process::exit(kante_runtime::monitor::monitor_main(std::path::Path::new(
            &args[2],
        )));
    }
    let rootfs = PathBuf::from(&args[1]);
    let privileged = args.get(2).map(|s| s == "privileged").unwrap_or(false);
    let rt = LinuxRuntime::new(std::env::current_exe().unwrap()).unwrap();
    let spec = ContainerSpec {
        name: "smoke".into(),
        hostname: "smoke".into(),
        rootfs,
        runtime_dir: PathBuf::from("/tmp/kante-smoke-run"),
        idmap: if privileged {
            None
        } else {
            Some(IdMap {
                host_uid: 1_000_000,
                host_gid: 1_000_000,
                size: 65536,
            })
        },
        cgroup: "kante-smoke/smoke".into(),
        init: vec!["/sbin/init".into()],
        env: vec![],
        cap_drop: DEFAULT_CAP_DROP.to_vec(),
        mounts: vec![],
        nesting: false,
        intercept: Default::default(),
        console_log_limit: 1 << 20,
        lxcfs: None,
    };
    let t0 = Instant::now();
    let c = rt.start(&spec, &mut |_| Ok(())).expect("start");
    println!("started pid {} in {:?}", c.pid(), t0.elapsed());
    let run = |argv: &[&str]| -> (i32, String, String) {
        let p = rt
            .exec(
                &c,
                &ExecSpec {
                    argv: argv.iter().map(|s| s.to_string()).collect(),
                    env: vec!["PATH=/usr/sbin:/usr/bin:/sbin:/bin".into()],
                    cwd: "/root".into(),
                    uid: 0,
                    gid: 0,
                    pty: None,
                },
            )
            .expect("exec");
        let ExecStdio::Pipes {
            stdin,
            stdout,
            stderr,
        } = p.stdio
        else {
            unreachable!()
        };
        drop(stdin);
        let mut out = String::new();
        std::fs::File::from(stdout)
            .read_to_string(&mut out)
            .unwrap();
        let mut err = String::new();
        std::fs::File::from(stderr)
            .read_to_string(&mut err)
            .unwrap();
        if let Some(helper) = &p.helper {
            let _ = helper.wait();
        }
        let code = match p.process.wait() {
            Ok(kante_runtime::process::Exit::Exited(code)) => code,
            _ => 0,
        };
        (code, out, err)
    };
    let mut state = String::new();
    for _ in 0..100 {
        let (_, out, _) = run(&["systemctl", "is-system-running"]);
        state = out.trim().to_string();
        if state == "running" || state == "degraded" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("systemd: {state} after {:?}", t0.elapsed());
    if state != "running" {
        println!("{}", run(&["systemctl", "--failed", "--no-pager"]).1);
    }
    println!(
        "{:?}",
        run(&[
            "sh",
            "-c",
            "cat /proc/self/uid_map; id; hostname; echo err >&2; exit 3"
        ])
    );
    let t1 = Instant::now();
    let e = Instant::now();
    for _ in 0..20 {
        run(&["true"]);
    }
    println!("exec true x20: {:?} each", e.elapsed() / 20);
    println!("stats {:?}", rt.stats(&c));
    rt.signal(&c, libc::SIGRTMIN() + 3).unwrap();
    let fd = c.init_pidfd.as_raw_fd();
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, 20000) };
    println!("stopped in {:?}", t1.elapsed());
    println!("exit {:?}", rt.cleanup(c).unwrap());
}
