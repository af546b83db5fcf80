//! Test support (feature `testing`): a real [`Engine`] over fakes of the
//! host, in a temporary directory, so its behaviour runs in plain
//! `cargo test` without root and without touching the host.
//!
//! [`TestHost`] holds the fakes and opens engines over them: the
//! [`FakeRuntime`] (containers that are table entries; a test ends their
//! init), kante-network's [`FakeNetOps`] (links in a table, with `eth0` and
//! a bridge `br0`), the [`MockDriver`] (registered as storage driver
//! `mock`, beside the real `dir`, which needs no root), an lxcfs that is
//! never there, and an id range starting at the test's own uid. Opening
//! twice over the same host is a daemon restart: the fake runtime keeps its
//! guests, so the second engine re-attaches to them.
//!
//! [`image`] builds small image tarballs with GNU tar.

pub mod image;
mod inspect;
mod runtime;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kante_api::image::ImageAliasRef;
use kante_api::instance::{InstanceSource, InstanceStatePut, InstancesPost};
use kante_api::operation::Operation;
use kante_network::{NetContext, Ovs};
use kante_runtime::lxcfs::Lxcfs;

pub use inspect::{alias_get, image_get, instance_names, instance_row, instance_status};
pub use kante_network::FakeNetOps;
pub use kante_storage::mock::MockDriver;
pub use runtime::{FakeRuntime, FAKE_MEMORY_USAGE, FAKE_PID_BASE};

use crate::images::ImageUpload;
use crate::instance::idmaps::{HostIdRange, BLOCK};
use crate::{Engine, EngineConfig, HostDeps, Op};

/// How long a test waits for an operation before it fails.
pub const OP_TIMEOUT: Duration = Duration::from_secs(60);

/// Id blocks in a test host's range (block 0 shared, 3 for isolation).
pub const TEST_ID_BLOCKS: u32 = 4;

/// See the module docs.
pub struct TestHost {
    dir: tempfile::TempDir,
    pub runtime: Arc<FakeRuntime>,
    pub net: Arc<FakeNetOps>,
    pub storage: Arc<MockDriver>,
    pub id_range: HostIdRange,
}

impl Default for TestHost {
    fn default() -> Self {
        TestHost::new()
    }
}

impl TestHost {
    pub fn new() -> TestHost {
        let dir = tempfile::Builder::new()
            .prefix("kante-fake-host-")
            .tempdir()
            .expect("a temporary directory");
        let runtime = Arc::new(FakeRuntime::new(&dir.path().join("cgroup")));
        let net = Arc::new(FakeNetOps::new());
        net.add_link("eth0", None);
        net.add_link("br0", Some("bridge"));
        // Guest root is the test's own user: a file a guest's root makes
        // through the fake's file server can then be chowned without root.
        let (uid, gid) = kante_runtime::host::effective_ids();
        let id_range = HostIdRange {
            uid,
            gid,
            count: TEST_ID_BLOCKS * BLOCK,
        };
        TestHost {
            dir,
            runtime,
            net,
            storage: MockDriver::new(),
            id_range,
        }
    }

    /// The test's private directory (the engine's state is in `kante/`).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn kante_dir(&self) -> PathBuf {
        self.dir.path().join("kante")
    }

    /// The fakes, as an engine takes them.
    pub fn deps(&self) -> HostDeps {
        let ovs = Ovs::with_db(self.dir.path().join("no-ovsdb.sock"));
        HostDeps {
            runtime: self.runtime.clone(),
            net: NetContext::new(self.net.clone(), ovs),
            lxcfs: Arc::new(Lxcfs::unavailable(self.dir.path().join("lxcfs"))),
            id_range: self.id_range,
            storage: kante_storage::Registry::builtin().with(self.storage.clone()),
        }
    }

    /// Opens an engine over the fakes (again: a daemon restart).
    pub async fn open(&self) -> Arc<Engine> {
        Engine::open(
            EngineConfig {
                kante_dir: self.kante_dir(),
            },
            self.deps(),
        )
        .await
        .expect("opening a test engine")
    }

    /// Imports [`image::build`]'s default image under `alias`; returns its
    /// fingerprint.
    pub async fn import_image(&self, engine: &Engine, alias: &str) -> String {
        let tarball = image::build(self.path(), &image::Spec::default());
        import_tarball(engine, &tarball, Some(alias)).await
    }

    /// Creates instance `name` from the image `alias` with the given
    /// config (stopped); panics if that fails.
    pub async fn create(&self, engine: &Engine, name: &str, alias: &str, config: &[(&str, &str)]) {
        let op = engine
            .instance_create(create_request(name, alias, config))
            .await
            .unwrap_or_else(|e| panic!("creating {name}: {e}"));
        wait_ok(&op).await;
    }

    /// Creates and starts `name` from `alias`.
    pub async fn launch(&self, engine: &Engine, name: &str, alias: &str) {
        self.create(engine, name, alias, &[]).await;
        start(engine, name).await;
    }
}

/// Imports an image tarball (read by the store as an upload's body
/// would be); returns its fingerprint.
pub async fn import_tarball(engine: &Engine, tarball: &Path, alias: Option<&str>) -> String {
    let f = std::fs::File::open(tarball).expect("opening the image");
    let stored = engine.store_task(None, move |dir, expected, limits| {
        kante_images::store_unified(dir, f, expected, limits)
    });
    let op = engine.image_import(ImageUpload {
        stored,
        filename: tarball
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        public: false,
        properties: Default::default(),
        aliases: alias
            .map(|a| {
                vec![ImageAliasRef {
                    name: a.into(),
                    description: String::new(),
                }]
            })
            .unwrap_or_default(),
        profiles: None,
    });
    let done = wait_ok(&op).await;
    done.metadata["fingerprint"]
        .as_str()
        .expect("the import's fingerprint")
        .to_string()
}

/// `POST /1.0/instances` from image alias `alias` with `config`.
pub fn create_request(name: &str, alias: &str, config: &[(&str, &str)]) -> InstancesPost {
    let mut req = InstancesPost {
        name: name.into(),
        source: InstanceSource {
            kind: "image".into(),
            alias: alias.into(),
            ..Default::default()
        },
        ..Default::default()
    };
    for (k, v) in config {
        req.put.config.insert(k.to_string(), v.to_string());
    }
    req
}

/// A state change (`start`, `stop`, …) as its operation.
pub async fn state(engine: &Engine, name: &str, action: &str, force: bool) -> Arc<Op> {
    engine
        .instance_state_put(
            name,
            InstanceStatePut {
                action: action.into(),
                force,
                timeout: -1,
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{action} {name}: {e}"))
}

/// Starts `name`; panics if that fails.
pub async fn start(engine: &Engine, name: &str) {
    let op = state(engine, name, "start", false).await;
    wait_ok(&op).await;
}

/// Stops `name` (forced: no grace period); panics if that fails.
pub async fn stop(engine: &Engine, name: &str) {
    let op = state(engine, name, "stop", true).await;
    wait_ok(&op).await;
}

/// Waits for `op` to end (at most [`OP_TIMEOUT`]).
pub async fn wait(op: &Arc<Op>) -> Operation {
    let done = op.wait(Some(OP_TIMEOUT)).await;
    assert_ne!(
        done.status, "Running",
        "operation {:?} did not end within {OP_TIMEOUT:?}",
        done.description
    );
    done
}

/// Waits for `op` and checks it succeeded.
pub async fn wait_ok(op: &Arc<Op>) -> Operation {
    let done = wait(op).await;
    assert_eq!(
        done.status, "Success",
        "operation {:?} failed: {}",
        done.description, done.err
    );
    done
}

/// Waits for `op` and checks it failed; returns its error.
pub async fn wait_err(op: &Arc<Op>) -> String {
    let done = wait(op).await;
    assert_eq!(
        done.status, "Failure",
        "operation {:?} should have failed",
        done.description
    );
    done.err
}

/// As [`eventually`], for a check that awaits (a state read).
pub async fn eventually_async<F: std::future::Future<Output = bool>>(
    mut f: impl FnMut() -> F,
) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f().await
}

/// Polls `f` until it holds (at most 10 s); false if it never did.
pub async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}
