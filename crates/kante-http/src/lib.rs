//! Kante's HTTP layer: LXD API 1.0 routes over a unix socket. Each handler
//! parses its request into one `kante_engine::front::Request`, hands it to
//! the engine's front door (`Engine::handle`) and renders the `Reply`
//! (`response::render`); no decision is made here. Over HTTPS
//! (`https`), each request carries its caller (the peer's address and TLS
//! client certificate) to the engine, which decides trust (`gate`).

pub mod body;
pub mod forward;
pub mod gate;
pub mod https;
pub mod methods;
pub mod openapi;
pub mod response;
pub mod routes;
pub mod scope;
#[cfg(feature = "testing")]
pub mod testing;
pub mod ui;
pub mod wslimit;

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use kante_engine::Engine;

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    /// Slots for concurrent websockets (see `wslimit`).
    pub ws: Arc<wslimit::WsSlots>,
}

/// The route table as it is built: every path the router serves is
/// recorded here with its methods and what their handlers read (see
/// `methods`), so tests can walk them all ([`route_paths`]) and the
/// OpenAPI document describes exactly them ([`openapi::document`]).
pub struct Routes {
    router: Router<AppState>,
    routes: Vec<(String, Vec<methods::Op>)>,
}

impl Routes {
    fn new() -> Routes {
        Routes {
            router: Router::new(),
            routes: Vec::new(),
        }
    }

    /// Adds `path` with its methods.
    pub fn route(mut self, path: &str, m: methods::Methods) -> Routes {
        self.routes.push((path.to_string(), m.ops));
        self.router = self.router.route(path, m.router);
        self
    }
}

/// Every path pattern the router serves (`/1.0/instances/{name}`, …).
pub fn route_paths() -> Vec<String> {
    route_table().into_iter().map(|(path, _)| path).collect()
}

/// Every path pattern the router serves with its methods, in the order
/// the table adds them.
pub fn route_table() -> Vec<(String, Vec<methods::Op>)> {
    table().routes
}

/// The API's routes, with the websocket cap from the environment.
pub fn router(engine: Arc<Engine>) -> Router {
    router_with(engine, wslimit::WsSlots::from_env())
}

pub fn router_with(engine: Arc<Engine>, ws: wslimit::WsSlots) -> Router {
    router_shared(engine, Arc::new(ws))
}

/// The router over `engine`, with websocket slots shared with other
/// listeners (the unix socket and HTTPS count against one cap). Every
/// request passes the trust gate first (`gate`), then has a small body
/// read ahead of its handler (`body::read_ahead`), then is sent to the
/// cluster member serving it when that is another one (`forward`).
pub fn router_shared(engine: Arc<Engine>, ws: Arc<wslimit::WsSlots>) -> Router {
    let state = AppState { engine, ws };
    table()
        .router
        .fallback(|| async { response::error(404, "not found") })
        .method_not_allowed_fallback(|| async { response::error(405, "method not allowed") })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            forward::forward,
        ))
        .layer(axum::middleware::from_fn(body::read_ahead))
        .layer(axum::middleware::from_fn(scope::scope))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            gate::gate,
        ))
        .with_state(state)
}

fn table() -> Routes {
    use methods::{get, post};
    use routes::*;
    let instances = |r: Routes, base: &str| {
        // Its handler reads a JSON create or a backup tarball to import.
        let create = get(instances::list)
            .post(backups::create_or_import)
            .json::<kante_api::instance::InstancesPost>();
        r.route(base, create)
            .route(
                &format!("{base}/{{name}}"),
                get(instances::get)
                    .put(instances::put)
                    .patch(instances::patch)
                    .delete(instances::delete)
                    .post(instances::post),
            )
            .route(
                &format!("{base}/{{name}}/state"),
                get(instances::state_get).put(instances::state_put),
            )
            .route(&format!("{base}/{{name}}/exec"), post(instances::exec))
            .route(
                &format!("{base}/{{name}}/files"),
                get(files::get)
                    .query(&["path"])
                    .post(files::post)
                    .query(&["path"])
                    .delete(files::delete)
                    .query(&["path"]),
            )
            .route(
                &format!("{base}/{{name}}/console"),
                get(instances::console_get)
                    .delete(instances::console_delete)
                    .post(instances::console_attach),
            )
            .route(&format!("{base}/{{name}}/logs"), get(instances::logs))
            .route(
                &format!("{base}/{{name}}/logs/{{file}}"),
                get(instances::log_get),
            )
            .route(
                &format!("{base}/{{name}}/snapshots"),
                get(instances::snapshots).post(instances::snapshot_create),
            )
            .route(
                &format!("{base}/{{name}}/snapshots/{{snap}}"),
                get(instances::snapshot_get)
                    .put(instances::snapshot_put)
                    .post(instances::snapshot_post)
                    .delete(instances::snapshot_delete),
            )
    };
    let r = Routes::new()
        .route("/", get(server::root))
        .route(
            "/1.0",
            get(server::get).put(server::put).patch(server::patch),
        )
        .route(
            "/1.0/certificates",
            get(certificates::list).post(certificates::create),
        )
        .route(
            "/1.0/certificates/{fp}",
            get(certificates::get)
                .put(certificates::put)
                .patch(certificates::patch)
                .delete(certificates::delete),
        )
        .route("/1.0/events", get(events::events))
        .route("/1.0/operations", get(operations::list))
        .route(
            "/1.0/operations/{id}",
            get(operations::get).delete(operations::delete),
        )
        .route(
            "/1.0/operations/{id}/wait",
            get(operations::wait).query(&["timeout"]),
        )
        .route("/1.0/operations/{id}/websocket", get(operations::websocket))
        .route(
            "/1.0/images",
            // A JSON source to fetch from, or an upload.
            get(images::list)
                .post(images::create)
                .json::<kante_api::image::ImagesPost>(),
        )
        .route(
            "/1.0/images/aliases",
            get(images::aliases_list).post(images::alias_create),
        )
        .route(
            "/1.0/images/aliases/{*name}",
            get(images::alias_get)
                .put(images::alias_put)
                .patch(images::alias_put)
                .post(images::alias_post)
                .delete(images::alias_delete),
        )
        .route(
            "/1.0/images/{fp}",
            get(images::get)
                .put(images::put)
                .patch(images::patch)
                .delete(images::delete),
        )
        .route("/1.0/images/{fp}/export", get(images::export))
        .route("/1.0/images/{fp}/secret", post(images::secret))
        .route("/1.0/images/{fp}/refresh", post(images::refresh))
        .route("/1.0/profiles", get(profiles::list).post(profiles::create))
        .route(
            "/1.0/profiles/{name}",
            get(profiles::get)
                .put(profiles::put)
                .patch(profiles::patch)
                .post(profiles::post)
                .delete(profiles::delete),
        )
        .route("/1.0/networks", get(networks::list).post(networks::create))
        .route(
            "/1.0/networks/{name}",
            get(networks::get)
                .put(networks::put)
                .patch(networks::patch)
                .post(networks::post)
                .delete(networks::delete),
        )
        .route("/1.0/networks/{name}/state", get(networks::state))
        .route("/1.0/networks/{name}/leases", get(networks::leases))
        .route(
            "/1.0/storage-pools",
            get(storage::list).post(storage::create),
        )
        .route(
            "/1.0/storage-pools/{name}",
            get(storage::get)
                .put(storage::put)
                .patch(storage::patch)
                .delete(storage::delete),
        );
    let r = host::routes(r);
    let r = cluster::routes(r);
    let r = volumes::routes(r);
    let r = backups::routes(r);
    let r = instances(r, "/1.0/instances");
    let r = ui::routes(r);
    instances(r, "/1.0/containers")
}

/// Serves the API on a unix socket (root only, mode 0660) until `shutdown` resolves.
pub async fn serve_unix(
    engine: Arc<Engine>,
    path: &Path,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = claim_socket(path).await?;
    serve_listener(engine, listener, shutdown).await
}

/// Takes `path` for this daemon: refuses if another daemon answers there,
/// else replaces a stale socket (one a killed daemon left, which refuses
/// every connection) with a live one bound by [`bind_private`]. Called
/// first thing at start, so that from then on connections wait in the
/// listen backlog until [`serve_listener`] answers them, instead of being
/// refused while the engine opens.
pub async fn claim_socket(path: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    // A stale one is replaced in one step by the rename in bind_private.
    if std::fs::symlink_metadata(path).is_ok()
        && tokio::net::UnixStream::connect(path).await.is_ok()
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("{} is in use by another daemon", path.display()),
        ));
    }
    bind_private(path)
}

/// Gives `engine` its HTTPS listeners (`core.https_address` is bound
/// now if set); websockets on them count against `ws`.
pub async fn start_https(engine: &Arc<Engine>, ws: Arc<wslimit::WsSlots>) {
    engine.set_peer_link(forward::Link::new(engine));
    match https::HttpsListeners::new(engine, ws) {
        Ok(hook) => engine.set_listeners(hook).await,
        Err(e) => tracing::error!("HTTPS is unavailable: {e}"),
    }
}

/// Serves the API on a listener from [`claim_socket`] until `shutdown`,
/// and over HTTPS on `core.https_address` (see [`https`]).
pub async fn serve_listener(
    engine: Arc<Engine>,
    listener: std::os::unix::net::UnixListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(listener)?;
    let ws = Arc::new(wslimit::WsSlots::from_env());
    start_https(&engine, ws.clone()).await;
    axum::serve(listener, router_shared(engine, ws))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds the socket so that no other user can ever connect to it: `bind`
/// creates it with the process umask's mode (0777 under `umask 0`), so it
/// is made inside a fresh 0700 directory next to `path`, given mode 0660
/// and root:root there, and only then renamed into place.
pub fn bind_private(path: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let dir = path
        .parent()
        .unwrap_or(Path::new("."))
        .join(format!(".{name}.bind"));
    if dir.exists() {
        // Left by a daemon that died right here.
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    let bound = (|| {
        let tmp = dir.join(&*name);
        let l = std::os::unix::net::UnixListener::bind(&tmp)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o660))?;
        // root:root even under a setgid KANTE_DIR (a unit test runs as a user).
        if std::fs::metadata(&dir)?.uid() == 0 {
            std::os::unix::fs::lchown(&tmp, Some(0), Some(0))?;
        }
        std::fs::rename(&tmp, path)?;
        Ok(l)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    bound
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn the_socket_arrives_with_its_final_mode() {
        let tmp = std::env::temp_dir().join(format!("kante-http-bind-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir(&tmp).unwrap();
        let path = tmp.join("unix.socket");
        let l = super::bind_private(&path).unwrap();
        let m = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o660);
        assert!(std::os::unix::net::UnixStream::connect(&path).is_ok());
        // Only the socket is left: the private directory is gone.
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 1);
        if std::fs::metadata(&tmp).unwrap().uid() == 0 {
            assert_eq!((m.uid(), m.gid()), (0, 0));
        }
        drop(l);
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
