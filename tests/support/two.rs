//! Two kanteds on loopback HTTPS, both remotes (`a`, `b`) of one client
//! configuration, for the CLI's transfers between servers.

use std::path::PathBuf;
use std::process::Output;

use serde_json::json;

use crate::{free_port, kante_with_conf, Daemon};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The two servers: `a` is also `local:` for the CLI.
pub struct Two {
    pub a: Daemon,
    pub b: Daemon,
    pub conf: PathBuf,
}

impl Two {
    pub async fn up() -> Two {
        let a = Daemon::start().await;
        let b = Daemon::start().await;
        let conf = a.dir.join("client");
        std::fs::create_dir_all(&conf).unwrap();
        let t = Two { a, b, conf };
        for (name, d) in [("a", &t.a), ("b", &t.b)] {
            let port = free_port();
            d.client
                .patch(
                    "/1.0",
                    &json!({"config": {
                        "core.https_address": format!("127.0.0.1:{port}"),
                        "core.trust_password": "sesame"}}),
                )
                .await
                .unwrap();
            t.ok(&[
                "remote",
                "add",
                name,
                &format!("https://127.0.0.1:{port}"),
                "--accept-certificate",
                "--password=sesame",
            ]);
        }
        t
    }

    pub fn kante(&self, args: &[&str]) -> Output {
        kante_with_conf(&self.a, &self.conf, args)
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.kante(args);
        assert!(
            o.status.success(),
            "kante {args:?}: {}{}\n--- a:\n{}\n--- b:\n{}",
            text(&o.stdout),
            text(&o.stderr),
            self.a.log_text(),
            self.b.log_text()
        );
        text(&o.stdout)
    }

    /// Fails with one line on stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.kante(args);
        assert!(!o.status.success(), "kante {args:?} succeeded");
        let e = text(&o.stderr);
        assert_eq!(e.trim_end().lines().count(), 1, "{e:?}");
        e
    }
}
