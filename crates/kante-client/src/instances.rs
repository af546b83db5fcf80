//! Instances: list, get, create, update, delete, rename, state, console.

use kante_api::instance::{
    Instance, InstanceFull, InstancePost, InstancePut, InstanceState, InstanceStatePut,
    InstancesPost,
};
use kante_api::operation::Operation;
use serde::Serialize;

use crate::client::{read_body, url, Client};
use crate::error::{ClientError, Result};
use crate::operations::{async_operation, operation_instances};

fn instance_path(name: &str) -> String {
    format!("/1.0/instances/{}", url::seg(name))
}

impl Client {
    /// `GET /1.0/instances`: the names (recursion 0).
    pub async fn instance_names(&self) -> Result<Vec<String>> {
        let urls: Vec<String> = self.get_json("/1.0/instances").await?;
        Ok(urls
            .iter()
            .filter_map(|u| u.split('?').next()?.rsplit('/').next().map(str::to_string))
            .map(|s| {
                percent_encoding::percent_decode_str(&s)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect())
    }

    /// `GET /1.0/instances?recursion=1`.
    pub async fn instances(&self) -> Result<Vec<Instance>> {
        self.get_json("/1.0/instances?recursion=1").await
    }

    /// `GET /1.0/instances?recursion=2`: instances with state and snapshots.
    pub async fn instances_full(&self) -> Result<Vec<InstanceFull>> {
        self.get_json("/1.0/instances?recursion=2").await
    }

    pub async fn instance(&self, name: &str) -> Result<Instance> {
        self.get_json(&instance_path(name)).await
    }

    /// The instance and its `ETag` (for `If-Match` on the following PUT).
    pub async fn instance_with_etag(&self, name: &str) -> Result<(Instance, Option<String>)> {
        let resp = self.get(&instance_path(name)).await?;
        let etag = resp.etag();
        Ok((resp.into_metadata()?, etag))
    }

    /// `GET /1.0/instances/{name}?recursion=1`: with state and snapshots.
    pub async fn instance_full(&self, name: &str) -> Result<InstanceFull> {
        self.get_json(&format!("{}?recursion=1", instance_path(name)))
            .await
    }

    /// Sends `POST /1.0/instances` and returns the running create operation
    /// without waiting (its `resources` already name the instance).
    pub async fn create_instance_start(&self, post: &InstancesPost) -> Result<Operation> {
        self.create_instance_start_at(post, None).await
    }

    /// [`Client::create_instance_start`] on cluster member `target`
    /// (LXD's `?target=`; `None`: the cluster's scheduler picks).
    pub async fn create_instance_start_at(
        &self,
        post: &InstancesPost,
        target: Option<&str>,
    ) -> Result<Operation> {
        let path = match target {
            Some(t) => format!("/1.0/instances?target={}", crate::client::url::query(t)),
            None => "/1.0/instances".to_string(),
        };
        let resp = self.post(&path, post).await?;
        async_operation(&resp)
    }

    /// Creates an instance, waits for it, and returns its name (the server
    /// picks one when `post.name` is empty).
    pub async fn create_instance(&self, post: &InstancesPost) -> Result<String> {
        self.create_instance_at(post, None).await
    }

    /// [`Client::create_instance`] on cluster member `target`.
    pub async fn create_instance_at(
        &self,
        post: &InstancesPost,
        target: Option<&str>,
    ) -> Result<String> {
        let op = self.create_instance_start_at(post, target).await?;
        let done = self.wait_operation(&op.id, None).await?;
        let name = operation_instances(&done)
            .into_iter()
            .next()
            .or_else(|| operation_instances(&op).into_iter().next())
            .or_else(|| (!post.name.is_empty()).then(|| post.name.clone()))
            .ok_or_else(|| ClientError::Protocol("create operation names no instance".into()))?;
        Ok(name)
    }

    /// Convenience for tests and scripts: create `name` (empty: the server
    /// picks) from an image alias or fingerprint with default profiles, start
    /// it, and return its name. The start waits for the operation only, not
    /// for the guest's init.
    pub async fn launch(&self, name: &str, image: &str) -> Result<String> {
        let fingerprint = self.resolve_image(image).await?;
        let post = InstancesPost {
            name: name.to_string(),
            kind: "container".into(),
            source: kante_api::instance::InstanceSource {
                kind: "image".into(),
                fingerprint,
                ..Default::default()
            },
            ..Default::default()
        };
        let name = self.create_instance(&post).await?;
        let start = InstanceStatePut {
            action: "start".into(),
            timeout: -1,
            force: false,
            stateful: false,
        };
        self.set_instance_state(&name, &start).await?;
        Ok(name)
    }

    /// `PUT /1.0/instances/{name}` (whole writable object), waiting for the operation.
    pub async fn update_instance(
        &self,
        name: &str,
        put: &InstancePut,
        etag: Option<&str>,
    ) -> Result<()> {
        let resp = self.put_if_match(&instance_path(name), put, etag).await?;
        self.finish(resp).await.map(|_| ())
    }

    /// `PATCH /1.0/instances/{name}` with any partial body (sync in LXD).
    pub async fn patch_instance<T: Serialize + ?Sized>(&self, name: &str, patch: &T) -> Result<()> {
        let resp = self.patch(&instance_path(name), patch).await?;
        self.finish(resp).await.map(|_| ())
    }

    /// `DELETE /1.0/instances/{name}`, waiting for the operation.
    pub async fn delete_instance(&self, name: &str) -> Result<()> {
        let resp = self.delete(&instance_path(name)).await?;
        self.finish(resp).await.map(|_| ())
    }

    /// `POST /1.0/instances/{name}` `{"name": new}`, waiting for the operation.
    pub async fn rename_instance(&self, name: &str, new_name: &str) -> Result<()> {
        let body = InstancePost {
            name: new_name.to_string(),
            ..Default::default()
        };
        let resp = self.post(&instance_path(name), &body).await?;
        self.finish(resp).await.map(|_| ())
    }

    /// `POST /1.0/instances/{name}?target=MEMBER` `{"migration": true}`:
    /// a move to another member of the cluster (stopped, name kept),
    /// waiting for the operation.
    pub async fn move_instance_to_member(&self, name: &str, member: &str) -> Result<()> {
        let body = InstancePost {
            name: name.to_string(),
            migration: true,
            ..Default::default()
        };
        let path = format!(
            "{}?target={}",
            instance_path(name),
            crate::client::url::query(member)
        );
        let resp = self.post(&path, &body).await?;
        self.finish(resp).await.map(|_| ())
    }

    pub async fn instance_state(&self, name: &str) -> Result<InstanceState> {
        self.get_json(&format!("{}/state", instance_path(name)))
            .await
    }

    /// `PUT /1.0/instances/{name}/state`, waiting for the operation.
    pub async fn set_instance_state(&self, name: &str, state: &InstanceStatePut) -> Result<()> {
        let resp = self
            .put(&format!("{}/state", instance_path(name)), state)
            .await?;
        self.finish(resp).await.map(|_| ())
    }

    async fn state_action(
        &self,
        name: &str,
        action: &str,
        timeout: i64,
        force: bool,
    ) -> Result<()> {
        let body = InstanceStatePut {
            action: action.into(),
            timeout,
            force,
            stateful: false,
        };
        self.set_instance_state(name, &body).await
    }

    /// Starts the instance (as `lxc start`: timeout 0, not forced).
    pub async fn start_instance(&self, name: &str) -> Result<()> {
        self.state_action(name, "start", 0, false).await
    }

    /// Stops it. `force` kills at once; otherwise a clean shutdown that fails
    /// after `timeout` seconds (-1 waits forever, as `lxc stop` sends).
    pub async fn stop_instance(&self, name: &str, force: bool, timeout: i64) -> Result<()> {
        self.state_action(name, "stop", timeout, force).await
    }

    pub async fn restart_instance(&self, name: &str, force: bool, timeout: i64) -> Result<()> {
        self.state_action(name, "restart", timeout, force).await
    }

    pub async fn freeze_instance(&self, name: &str) -> Result<()> {
        self.state_action(name, "freeze", -1, false).await
    }

    pub async fn unfreeze_instance(&self, name: &str) -> Result<()> {
        self.state_action(name, "unfreeze", -1, false).await
    }

    /// `GET /1.0/instances/{name}/console`: the console log as raw text.
    pub async fn console_log(&self, name: &str) -> Result<Vec<u8>> {
        self.raw_get(&format!("{}/console", instance_path(name)))
            .await
    }

    /// `DELETE /1.0/instances/{name}/console`: clears the console log.
    pub async fn clear_console_log(&self, name: &str) -> Result<()> {
        self.delete(&format!("{}/console", instance_path(name)))
            .await
            .map(|_| ())
    }

    /// `GET /1.0/instances/{name}/logs/{file}` (e.g. `lxc.log`), raw text.
    pub async fn instance_log(&self, name: &str, file: &str) -> Result<Vec<u8>> {
        self.raw_get(&format!("{}/logs/{}", instance_path(name), url::seg(file)))
            .await
    }

    /// A GET whose success body is raw bytes and whose errors are envelopes.
    pub(crate) async fn raw_get(&self, path: &str) -> Result<Vec<u8>> {
        let resp = self
            .send_with(hyper::Method::GET, path, &[], crate::client::empty_body())
            .await?;
        let (parts, body) = read_body(resp).await?;
        if parts.status.as_u16() >= 400 {
            crate::client::decode_parts(parts, &body)?;
            return Err(ClientError::Protocol("error status without error".into()));
        }
        Ok(body.to_vec())
    }
}
