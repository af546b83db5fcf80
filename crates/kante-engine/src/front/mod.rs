//! The engine's front door: every API verb is one [`Request`] value, and
//! [`Engine::handle`] is the one place that answers it with a [`Reply`].
//!
//! The HTTP layer (kante-http) parses a request into a [`Request`], calls
//! `handle`, and renders the [`Reply`] (a JSON document, a `202` with an
//! operation, an empty success, a `201` with a location, bytes or a
//! stream); it decides nothing. Everything that decides — validation, a
//! refused verb, the `filter=` of a listing, profile merges, which volumes
//! the API may change — happens behind this door, and every verb that
//! does long work returns the [`crate::Op`] it created ([`Reply::Operation`]).
//!
//! **Why one enum and one dispatch** (as Firecracker's `rpc_interface.rs`)
//! rather than one service object per area: the whole API surface is
//! one type a reader can scan; a verb cannot bypass the door, so whatever
//! must happen to every request (forwarding, auditing, metrics by
//! [`Request::name`], authorisation later) is written once in
//! [`Engine::handle`]; and a request is a value, so it can be logged,
//! queued or sent to another member. The services behind it (the
//! `impl Engine` blocks per area) stay free to move.
//!
//! **Forwarding** (the cluster issue): [`Request::target`] names the
//! object a request is about, from the request alone. `handle` is where a
//! clustered engine will look up the member owning that object and, when
//! it is not this one, send the request there and return its answer
//! before any local logic runs (as Incus's
//! `ForwardedResponseIfTargetIsRemote`): an [`Target::Instance`] or
//! [`Target::Volume`] goes to the member holding it, an
//! [`Target::Operation`] to the member running it, a
//! [`Target::ClusterMember`] to that member; [`Target::Network`] and
//! [`Target::Pool`] are defined for all members and realised on each (a
//! network's create and delete fan out, and `?target=M` on its get or
//! change names M: `network_cluster.rs`); [`Target::Server`] is answered by any member (shared
//! records, whole-server lists, and creations, where placement rather
//! than forwarding picks the member); [`Target::Member`] never leaves this
//! member (its event stream, uploads that arrive here).
//!
//! **Not through the door**: the daemon's lifecycle, which no client
//! asks for — [`Engine::open`], [`Engine::stop_all_for_host_shutdown`]
//! and [`Engine::shutdown`], called by kanted — stays as direct methods.

mod etag;
pub(crate) mod feed;
pub mod filter;
mod reply;
mod request;
mod server_api;
mod upload;
mod verbs;

pub use etag::etag_of;
pub use reply::{Disposition, Download, DownloadPart, EventStream, Reply};
pub use request::{ListDetail, Request, Target};
pub use upload::{ByteStream, ImageUploadInfo, Parts, UploadBody};

// The engine's types that requests and replies carry: outside crates name
// them here, the modules that define them are crate-private.
pub use crate::instance::files::{parse_file_kind, FileGet, FileKind, FileMeta, FilePut};
pub use crate::instance::live::ChangeReport;
pub use crate::instance::snapshots::SnapshotsPost;
pub use crate::operations::Op;
pub use crate::ws::{WsConn, WsMsg};
// Random names (the boundary of a multipart download reply).
pub use crate::util::random_hex;

use crate::error::{EngineError, Result};
use crate::remote::certificates::Added;
use crate::remote::{Access, Caller};
use crate::Engine;
use verbs::custom_only;

impl Engine {
    /// Answers one request from the unix socket (fully trusted).
    pub async fn handle(&self, req: Request) -> Result<Reply> {
        self.handle_as(&Access::local(), req).await
    }

    /// Answers one request from `caller`, first asking the trust store
    /// whether it is trusted ([`Engine::trusts`]).
    pub async fn handle_from(&self, caller: &Caller, req: Request) -> Result<Reply> {
        let access = Access {
            trusted: self.trusts(caller).await,
            caller: caller.clone(),
        };
        self.handle_as(&access, req).await
    }

    /// Answers one API request for a caller the gate has classified: the
    /// engine's only entry for clients. An untrusted caller reaches only
    /// [`Request::open_to_untrusted`] verbs.
    pub async fn handle_as(&self, access: &Access, req: Request) -> Result<Reply> {
        let verb = req.name();
        let metrics = matches!(req, Request::Metrics);
        if !access.trusted
            && !req.open_to_untrusted()
            && !self.metrics_reader(access, metrics).await
        {
            tracing::debug!(verb, caller = ?access.caller, "refused: untrusted");
            return Err(EngineError::Forbidden("not authorized".into()));
        }
        let reply = self.dispatch(req, access).await;
        if let Err(e) = &reply {
            tracing::debug!(verb, status = e.status(), "refused: {e}");
        }
        reply
    }

    /// [`Engine::handle_as`] after checking `if_match` (the request's
    /// `If-Match`, quotes and all) against the ETag of the object the
    /// request would change, as LXD's `EtagCheck` does: empty or absent
    /// matches anything (see `etag.rs`).
    pub async fn handle_matching(
        &self,
        access: &Access,
        req: Request,
        if_match: Option<&str>,
    ) -> Result<Reply> {
        let wanted = if_match.map(|m| m.trim().trim_matches('"')).unwrap_or("");
        // Untrusted callers are refused by handle_as below.
        let current = etag::current_of(&req).filter(|_| access.trusted);
        if let (false, Some(get)) = (wanted.is_empty() || wanted == "*", current) {
            let hash = etag_of(&self.handle_as(access, get).await?).unwrap_or_default();
            if hash != wanted {
                return Err(EngineError::PreconditionFailed(format!(
                    "ETag doesn't match: {hash} vs {wanted}"
                )));
            }
        }
        self.handle_as(access, req).await
    }

    async fn dispatch(&self, req: Request, access: &Access) -> Result<Reply> {
        use Reply as R;
        use Request::*;
        Ok(match req {
            ServerGet if !access.trusted => {
                R::ServerUntrusted(Box::new(self.server_info_untrusted()))
            }
            ServerGet => R::Server(Box::new(self.server_info().await?)),
            CertificateList => R::Certificates(self.certificate_list().await?),
            CertificateCreate(post) => match self.certificate_create(access, *post).await? {
                Added::Certificate(location) => R::Created { location },
                Added::Token(op) => R::Operation(op),
            },
            CertificateGet { fingerprint } => {
                R::Certificate(Box::new(self.certificate_get(&fingerprint).await?))
            }
            CertificateUpdate {
                fingerprint,
                put,
                merge,
            } => {
                self.certificate_update(&fingerprint, put, merge).await?;
                R::Empty
            }
            CertificateDelete { fingerprint } => {
                self.certificate_delete(&fingerprint).await?;
                R::Empty
            }
            UiLogin { token } => R::UiSession(self.ui_login(access, &token).await?),
            UiLogout { session } => {
                self.ui_logout(&session).await?;
                R::Empty
            }
            ServerUpdate { config, merge } => {
                self.server_update(config, merge).await?;
                R::Empty
            }
            OperationList { all_members } => {
                let own = self.ops.list();
                R::Operations(match all_members {
                    true => self.cluster_operations(own).await,
                    false => own,
                })
            }
            OperationGet { id } => R::OperationState(self.ops.get(&id)?.snapshot()),
            OperationCancel { id } => {
                self.ops.get(&id)?.cancel()?;
                R::Empty
            }
            OperationWait { id, timeout } => {
                R::OperationState(self.ops.get(&id)?.wait(timeout).await)
            }
            OperationSocket { id, secret } => {
                if secret.is_empty() {
                    return Err(EngineError::Forbidden("Missing websocket secret".into()));
                }
                // Untrusted, the secret is the only credential: no answer
                // may tell a wrong one from an unknown operation.
                let claimed = self.ops.get(&id).and_then(|op| op.claim_socket(&secret));
                match claimed {
                    Ok(slot) => R::Socket(slot),
                    Err(_) if !access.trusted => {
                        return Err(EngineError::Forbidden("not authorized".into()))
                    }
                    Err(e) => return Err(e),
                }
            }
            Events { types } => R::Events(EventStream::new(self.events.subscribe(), types)),

            InstanceList {
                detail,
                filter,
                all_members,
            } => {
                let own = self.instance_listing(detail, &filter).await?;
                if all_members {
                    self.cluster_listing(detail, &filter, own).await?
                } else {
                    own
                }
            }
            InstanceCreate(post) if post.source.kind == "migration" => {
                R::Operation(self.migration_create(*post).await?)
            }
            InstanceCreate(post) => R::Operation(self.instance_create(*post).await?),
            InstanceImport { body, name, pool } => {
                R::Operation(self.backup_import(body, name, pool).await?)
            }
            InstanceGet { instance, full } if full => {
                R::InstanceFull(Box::new(self.instance_get_full(&instance).await?))
            }
            InstanceGet { instance, .. } => {
                R::Instance(Box::new(self.instance_get(&instance).await?))
            }
            InstanceUpdate { instance, put } => {
                R::Operation(self.instance_put(&instance, put).await?)
            }
            InstancePatch { instance, body } => {
                R::Changes(self.instance_patch(&instance, body).await?)
            }
            InstanceDelete { instance } => R::Operation(self.instance_delete_op(&instance).await?),
            InstanceRename {
                instance,
                post,
                target: Some(to),
            } if post.migration => {
                R::Operation(self.instance_move_to(&instance, &post, &to).await?)
            }
            InstanceRename { instance, post, .. } if post.migration => {
                R::Operation(self.migration_source(&instance, None, post).await?)
            }
            InstanceRename { instance, post, .. } => {
                R::Operation(self.instance_post(&instance, post).await?)
            }
            InstanceStateGet { instance } => {
                R::InstanceState(Box::new(self.instance_state(&instance).await?))
            }
            InstanceStatePut { instance, put } => {
                R::Operation(self.instance_state_put(&instance, put).await?)
            }
            InstanceExec { instance, post } => {
                R::Operation(self.instance_exec(&instance, post).await?)
            }
            ConsoleLog { instance } => R::Binary(self.instance_console_log(&instance).await?),
            ConsoleClear { instance } => {
                self.instance_console_clear(&instance).await?;
                R::Empty
            }
            ConsoleAttach { instance, post } => {
                R::Operation(self.instance_console(&instance, post).await?)
            }
            LogList { instance } => self.log_files(&instance).await?,
            LogGet { instance, file } => R::Text(self.instance_log(&instance, &file).await?),
            SnapshotList { instance } => R::Snapshots {
                snapshots: self.snapshot_list(&instance).await?,
                instance,
            },
            SnapshotCreate { instance, post } => {
                R::Operation(self.snapshot_create(&instance, post).await?)
            }
            SnapshotGet { instance, snapshot } => {
                R::Snapshot(Box::new(self.snapshot_get(&instance, &snapshot).await?))
            }
            SnapshotRename {
                instance,
                snapshot,
                post,
            } if post.migration => R::Operation(
                self.migration_source(&instance, Some(&snapshot), post)
                    .await?,
            ),
            SnapshotRename {
                instance,
                snapshot,
                post,
            } => R::Operation(
                self.snapshot_rename(&instance, &snapshot, &post.name)
                    .await?,
            ),
            SnapshotUpdate {
                instance,
                snapshot,
                expires_at,
            } => R::Operation(self.snapshot_put(&instance, &snapshot, expires_at).await?),
            SnapshotDelete { instance, snapshot } => {
                R::Operation(self.snapshot_delete(&instance, &snapshot).await?)
            }
            BackupList { instance } => R::Backups {
                backups: self.backup_list(&instance).await?,
                instance,
            },
            BackupCreate { instance, post } => {
                R::Operation(self.backup_create(&instance, post).await?)
            }
            BackupGet { instance, backup } => {
                R::Backup(Box::new(self.backup_get(&instance, &backup).await?))
            }
            BackupRename {
                instance,
                backup,
                new_name,
            } => R::Operation(self.backup_rename(&instance, &backup, &new_name).await?),
            BackupDelete { instance, backup } => {
                R::Operation(self.backup_delete(&instance, &backup).await?)
            }
            BackupExport { instance, backup } => self.backup_download(&instance, &backup).await?,
            FileGet { instance, path } => R::File {
                got: self.file_get(&instance, &path).await?,
                path,
            },
            FilePush {
                instance,
                path,
                put,
                body,
            } => {
                self.file_push(&instance, &path, put, body).await?;
                R::Empty
            }
            FileDelete { instance, path } => {
                self.file_delete(&instance, &path).await?;
                R::Empty
            }

            ImageList => R::Images(self.image_list(access.trusted).await?),
            ImageCreate(post) => {
                let pull = match &post.source {
                    Some(s) => crate::image_remote::RemoteImage::parse(s)?,
                    None => None,
                };
                if let Some(source) = pull {
                    return Ok(R::Operation(self.image_pull(post, source).await?));
                }
                let publish = match &post.source {
                    Some(s) => crate::image_publish::PublishSource::parse(s)?,
                    None => None,
                };
                if let Some(source) = publish {
                    return Ok(R::Operation(self.image_publish(post, source).await?));
                }
                let kind = post
                    .source
                    .as_ref()
                    .and_then(|s| s.get("type"))
                    .and_then(|t| t.as_str())
                    .unwrap_or("");
                return Err(EngineError::NotImplemented(format!(
                    "Image source {kind:?} is not supported yet: upload the image file (kante image import)"
                )));
            }
            ImageUpload { info, body } => R::Operation(self.image_upload(info, body).await?),
            ImageGet {
                fingerprint,
                secret,
            } if !access.trusted => R::Image(Box::new(
                self.untrusted_image(&fingerprint, secret, false).await?,
            )),
            ImageGet { fingerprint, .. } => R::Image(Box::new(self.image_get(&fingerprint).await?)),
            ImageUpdate {
                fingerprint,
                put,
                merge,
            } => {
                self.image_update(&fingerprint, put, merge).await?;
                R::Empty
            }
            ImageDelete { fingerprint } => R::Operation(self.image_delete(&fingerprint).await?),
            ImageExport {
                fingerprint,
                secret,
            } if !access.trusted => {
                let image = self.untrusted_image(&fingerprint, secret, true).await?;
                self.image_download(&image.fingerprint).await?
            }
            ImageExport { fingerprint, .. } => self.image_download(&fingerprint).await?,
            ImageSecret { fingerprint } => R::Operation(self.image_secret(&fingerprint).await?),
            ImageRefresh { fingerprint } => R::Operation(self.image_refresh(&fingerprint).await?),
            AliasList => R::Aliases(self.alias_list(access.trusted).await?),
            AliasCreate(post) => {
                let location = format!("/1.0/images/aliases/{}", post.name);
                self.alias_create(post).await?;
                R::Created { location }
            }
            AliasGet { name } => R::Alias(self.alias_get(&name, access.trusted).await?),
            AliasUpdate {
                name,
                target,
                description,
            } => {
                self.alias_update(&name, Some(target), description).await?;
                R::Empty
            }
            AliasRename { name, new_name } => {
                self.alias_rename(&name, &new_name).await?;
                R::Created {
                    location: format!("/1.0/images/aliases/{new_name}"),
                }
            }
            AliasDelete { name } => {
                self.alias_delete(&name).await?;
                R::Empty
            }

            ProfileList => R::Profiles(self.profile_list().await?),
            ProfileCreate(post) => {
                let location = format!("/1.0/profiles/{}", post.name);
                self.profile_create(post).await?;
                R::Created { location }
            }
            ProfileGet { name } => R::Profile(Box::new(self.profile_get(&name).await?)),
            ProfileUpdate { name, put, merge } => self.profile_change(&name, put, merge).await?,
            ProfileRename { name, new_name } => self.profile_move(&name, &new_name).await?,
            ProfileDelete { name } => {
                self.profile_delete(&name).await?;
                R::Empty
            }

            NetworkList => R::Networks(self.network_list().await?),
            NetworkCreate {
                post,
                target,
                notified,
            } => {
                let location = format!("/1.0/networks/{}", post.name);
                self.network_create_at(post, target, notified).await?;
                R::Created { location }
            }
            NetworkGet { name, target } => {
                R::Network(Box::new(self.network_get_at(&name, target).await?))
            }
            NetworkUpdate {
                name,
                put,
                merge,
                target,
                notified,
            } => {
                self.network_update_at(&name, put, merge, target, notified)
                    .await?;
                R::Empty
            }
            NetworkRename { name, new_name } => {
                self.network_rename(&name, &new_name).await?;
                R::Created {
                    location: format!("/1.0/networks/{new_name}"),
                }
            }
            NetworkDelete { name, notified } => {
                self.network_delete_at(&name, notified).await?;
                R::Empty
            }
            NetworkState { name } => R::NetworkState(Box::new(self.network_state(&name).await?)),
            NetworkLeases { name } => R::Leases(self.network_leases(&name).await?),

            PoolList => R::Pools(self.pool_list().await?),
            PoolCreate(post) => {
                let location = format!("/1.0/storage-pools/{}", post.name);
                self.pool_create(post).await?;
                R::Created { location }
            }
            PoolGet { pool } => R::Pool(Box::new(self.pool_get(&pool).await?)),
            PoolUpdate { pool, put, merge } => {
                self.pool_update(&pool, put.description, put.config, merge)
                    .await?;
                R::Empty
            }
            PoolDelete { pool } => {
                self.pool_delete(&pool).await?;
                R::Empty
            }
            VolumeList {
                pool,
                kind,
                all_members,
            } => {
                let own = self
                    .volume_list(&pool, kind.as_deref().unwrap_or(""))
                    .await?;
                let volumes = match all_members {
                    true => self.cluster_volumes(&pool, kind.as_deref(), own).await,
                    false => own,
                };
                R::Volumes { volumes, pool }
            }
            VolumeCreate { pool, kind, post } => self.volume_make(&pool, kind, post).await?,
            VolumeGet { pool, kind, volume } => {
                R::Volume(Box::new(self.volume_get(&pool, &kind, &volume).await?))
            }
            VolumeUpdate {
                pool,
                kind,
                volume,
                put,
                merge,
            } => {
                custom_only(&kind)?;
                self.volume_update(&pool, &volume, put, merge).await?;
                R::Empty
            }
            VolumeRename {
                pool,
                kind,
                volume,
                post,
            } => self.volume_move(&pool, &kind, &volume, post).await?,
            VolumeDelete { pool, kind, volume } => {
                custom_only(&kind)?;
                self.volume_delete(&pool, &volume).await?;
                R::Empty
            }
            VolumeSnapshotList { pool, kind, volume } => {
                custom_only(&kind)?;
                R::VolumeSnapshots {
                    snapshots: self.volume_snapshot_list(&pool, &volume).await?,
                    pool,
                    volume,
                }
            }
            VolumeSnapshotCreate {
                pool,
                kind,
                volume,
                post,
            } => {
                custom_only(&kind)?;
                R::Operation(self.volume_snapshot_create(&pool, &volume, post)?)
            }
            VolumeSnapshotGet {
                pool,
                kind,
                volume,
                snapshot,
            } => {
                custom_only(&kind)?;
                R::VolumeSnapshot(Box::new(
                    self.volume_snapshot_get(&pool, &volume, &snapshot).await?,
                ))
            }
            VolumeSnapshotDelete {
                pool,
                kind,
                volume,
                snapshot,
            } => {
                custom_only(&kind)?;
                R::Operation(
                    self.volume_snapshot_delete(&pool, &volume, &snapshot)
                        .await?,
                )
            }
            // A restricted certificate sees only its own projects (LXD).
            ProjectList => {
                let mut list = self.project_list().await?;
                if let Some(allowed) = self.restriction(&access.caller).await {
                    list.retain(|p| allowed.contains(&p.name));
                }
                R::Projects(list)
            }
            req @ (Metrics | Resources | PoolResources { .. } | WarningList) => {
                self.server_api(req).await?
            }
            req @ (ProjectCreate { .. } | ProjectGet { .. } | ProjectUpdate { .. }) => {
                self.server_api(req).await?
            }
            req @ (ProjectRename { .. } | ProjectDelete { .. } | WarningGet { .. }) => {
                self.server_api(req).await?
            }
            req @ (ClusterGet | ClusterPut(_) | ClusterMembers | ClusterMemberGet { .. }) => {
                self.cluster_api(req).await?
            }
            req @ (ClusterMemberDelete { .. }
            | ClusterMemberAdd(_)
            | ClusterAccept(_)
            | ServiceList) => self.cluster_api(req).await?,
            req @ (ClusterMemberPut { .. }
            | ClusterGroups
            | ClusterGroupGet { .. }
            | ClusterGroupCreate(_)
            | ClusterGroupUpdate { .. }
            | ClusterGroupRename { .. }
            | ClusterGroupDelete { .. }) => self.cluster_api(req).await?,
            ClusterMemberState { name, post } => {
                R::Operation(self.member_state(&name, post).await?)
            }
            ClusterMemberStateGet { name } => {
                R::ClusterMemberState(Box::new(self.member_state_get(&name).await?))
            }
        })
    }
}
