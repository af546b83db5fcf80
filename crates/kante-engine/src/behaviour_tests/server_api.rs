//! The host-wide verbs: metrics of running instances (from their
//! cgroup, moving as it moves), who may read them, ETags and `If-Match`,
//! the one `default` project, and warnings.

use std::net::SocketAddr;

use kante_api::certificate::CertificatesPost;
use kante_api::profile::ProfilePut;

use crate::front::{etag_of, Reply, Request};
use crate::remote::{Access, Caller};
use crate::testing::{self, TestHost};
use crate::Engine;

async fn metrics(engine: &Engine) -> String {
    match engine.handle(Request::Metrics).await.unwrap() {
        Reply::Metrics(t) => t,
        other => panic!("expected metrics, got {}", other.kind()),
    }
}

fn cgroup_dir(engine: &Engine, name: &str) -> std::path::PathBuf {
    let r = engine.running(name).expect("running");
    let guard = crate::lock(&r.container);
    let c = guard.as_ref().expect("a container");
    engine.runtime.cgroup(c).unified_dir().expect("unified dir")
}

/// The value of the series whose line starts with `prefix`.
fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix)?.trim().parse().ok())
}

#[tokio::test]
async fn metrics_show_running_instances_from_their_cgroup() {
    let host = TestHost::new();
    let engine = host.open().await;
    host.import_image(&engine, "img").await;
    host.launch(&engine, "c1", "img").await;
    host.create(&engine, "c2", "img", &[]).await;
    let cg = cgroup_dir(&engine, "c1");
    std::fs::write(
        cg.join("cpu.stat"),
        "usage_usec 3000000\nuser_usec 2000000\nsystem_usec 1000000\n",
    )
    .unwrap();
    std::fs::write(
        cg.join("memory.stat"),
        "anon 4096\nfile 8192\nactive_anon 100\n",
    )
    .unwrap();
    let text = metrics(&engine).await;
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(text.contains("# TYPE lxd_cpu_seconds counter\n"), "{text}");
    let user = "lxd_cpu_seconds_total{cpu=\"0\",mode=\"user\",name=\"c1\",project=\"default\",type=\"container\"}";
    assert_eq!(value(&text, user), Some(2.0), "{text}");
    let rss = "lxd_memory_RSS_bytes{name=\"c1\",project=\"default\",type=\"container\"}";
    assert_eq!(value(&text, rss), Some(4096.0), "{text}");
    let cached = "lxd_memory_Cached_bytes{name=\"c1\",project=\"default\",type=\"container\"}";
    assert_eq!(value(&text, cached), Some(8192.0), "{text}");
    let procs = "lxd_procs_total{name=\"c1\",project=\"default\",type=\"container\"}";
    assert_eq!(value(&text, procs), Some(1.0), "{text}");
    // Stopped instances have no figures.
    assert!(!text.contains("name=\"c2\""), "{text}");
    // The counter moves with the cgroup.
    std::fs::write(
        cg.join("cpu.stat"),
        "usage_usec 9000000\nuser_usec 7500000\nsystem_usec 1500000\n",
    )
    .unwrap();
    assert_eq!(value(&metrics(&engine).await, user), Some(7.5));
    testing::stop(&engine, "c1").await;
    assert_eq!(metrics(&engine).await, "# EOF\n");
}

#[tokio::test]
async fn a_metrics_certificate_reads_metrics_and_nothing_else() {
    let host = TestHost::new();
    let engine = host.open().await;
    let pair = kante_tls::KeyPair::generate(kante_tls::Role::Client, &["prom".into()]).unwrap();
    let post = CertificatesPost {
        certificate: pair.cert_pem.clone(),
        kind: "metrics".into(),
        ..Default::default()
    };
    engine
        .handle(Request::CertificateCreate(Box::new(post)))
        .await
        .unwrap();
    let caller = Caller::remote(
        SocketAddr::from(([192, 0, 2, 9], 40000)),
        Some(pair.cert_der().unwrap().to_vec()),
    );
    assert!(engine.holds_metrics_certificate(&caller).await);
    let reply = engine.handle_from(&caller, Request::Metrics).await.unwrap();
    assert!(matches!(reply, Reply::Metrics(_)));
    for req in [
        Request::ProfileList,
        Request::Resources,
        Request::ProjectList,
    ] {
        let e = engine.handle_from(&caller, req).await.err().unwrap();
        assert_eq!(e.status(), 403);
    }
    // A caller with no certificate reads no metrics.
    let nobody = Caller::remote(SocketAddr::from(([192, 0, 2, 9], 40001)), None);
    let e = engine
        .handle_from(&nobody, Request::Metrics)
        .await
        .err()
        .unwrap();
    assert_eq!(e.status(), 403);
}

#[tokio::test]
async fn if_match_must_be_the_current_etag() {
    let host = TestHost::new();
    let engine = host.open().await;
    let get = || Request::ProfileGet {
        name: "default".into(),
    };
    let etag = etag_of(&engine.handle(get()).await.unwrap()).unwrap();
    let update = |d: &str| Request::ProfileUpdate {
        name: "default".into(),
        put: ProfilePut {
            description: d.into(),
            ..Default::default()
        },
        merge: true,
    };
    let local = Access::local();
    let e = engine
        .handle_matching(&local, update("stale"), Some("\"0000\""))
        .await
        .err()
        .unwrap();
    assert_eq!(e.status(), 412);
    assert!(e.to_string().starts_with("ETag doesn't match"), "{e}");
    let Reply::Profile(p) = engine.handle(get()).await.unwrap() else {
        panic!("expected the profile")
    };
    assert_ne!(p.description, "stale");
    let quoted = format!("\"{etag}\"");
    engine
        .handle_matching(&local, update("fresh"), Some(&quoted))
        .await
        .unwrap();
    let after = engine.handle(get()).await.unwrap();
    let Reply::Profile(p) = &after else {
        panic!("expected the profile")
    };
    assert_eq!(p.description, "fresh");
    // The change moved the ETag: the old one no longer matches.
    assert_ne!(etag_of(&after).unwrap(), etag);
    let e = engine
        .handle_matching(&local, update("again"), Some(&quoted))
        .await
        .err()
        .unwrap();
    assert_eq!(e.status(), 412);
}

#[tokio::test]
async fn there_is_one_project_and_no_warnings() {
    let host = TestHost::new();
    let engine = host.open().await;
    let Reply::Projects(list) = engine.handle(Request::ProjectList).await.unwrap() else {
        panic!("expected projects")
    };
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].name, "default");
    assert_eq!(list[0].config["features.profiles"], "true");
    assert!(list[0]
        .used_by
        .contains(&"/1.0/profiles/default".to_string()));
    let status = |r: crate::Result<Reply>| r.err().map(|e| e.status());
    let other = || "p2".to_string();
    assert_eq!(
        status(engine.handle(Request::ProjectGet { name: other() }).await),
        Some(404)
    );
    assert_eq!(
        status(
            engine
                .handle(Request::ProjectCreate { name: other() })
                .await
        ),
        Some(400)
    );
    let rename = Request::ProjectRename {
        name: "default".into(),
    };
    assert_eq!(status(engine.handle(rename).await), Some(403));
    assert_eq!(
        crate::projects::check_project(Some("p2"))
            .unwrap_err()
            .status(),
        404
    );
    assert!(crate::projects::check_project(Some("default")).is_ok());
    let Reply::Warnings(w) = engine.handle(Request::WarningList).await.unwrap() else {
        panic!("expected warnings")
    };
    assert!(w.is_empty());
    let Reply::Resources(r) = engine.handle(Request::Resources).await.unwrap() else {
        panic!("expected resources")
    };
    assert!(r.cpu.total >= 1 && r.memory.total > 0);
    let pool = Request::PoolResources {
        pool: "default".into(),
    };
    let Reply::PoolResources(p) = engine.handle(pool).await.unwrap() else {
        panic!("expected pool resources")
    };
    assert!(p.space.total > 0 && p.space.used <= p.space.total);
}
