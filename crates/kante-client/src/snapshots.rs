//! Instance snapshots: create, get, rename, delete, restore.

use kante_api::instance::InstanceSnapshot;

use crate::client::{url, Client};
use crate::error::Result;

fn snapshots_path(instance: &str) -> String {
    format!("/1.0/instances/{}/snapshots", url::seg(instance))
}

fn snapshot_path(instance: &str, snap: &str) -> String {
    format!("{}/{}", snapshots_path(instance), url::seg(snap))
}

impl Client {
    /// `GET /1.0/instances/{name}/snapshots?recursion=1`.
    pub async fn snapshots(&self, instance: &str) -> Result<Vec<InstanceSnapshot>> {
        self.get_json(&format!("{}?recursion=1", snapshots_path(instance)))
            .await
    }

    pub async fn snapshot(&self, instance: &str, snap: &str) -> Result<InstanceSnapshot> {
        self.get_json(&snapshot_path(instance, snap)).await
    }

    /// `POST /1.0/instances/{name}/snapshots` (an empty name lets the server
    /// pick `snapN`), waiting for the operation.
    pub async fn create_snapshot(&self, instance: &str, snap: &str, stateful: bool) -> Result<()> {
        let body = serde_json::json!({ "name": snap, "stateful": stateful });
        let resp = self.post(&snapshots_path(instance), &body).await?;
        self.finish(resp).await.map(|_| ())
    }

    pub async fn delete_snapshot(&self, instance: &str, snap: &str) -> Result<()> {
        let resp = self.delete(&snapshot_path(instance, snap)).await?;
        self.finish(resp).await.map(|_| ())
    }

    /// `POST /1.0/instances/{name}/snapshots/{snap}` `{"name": new}`.
    pub async fn rename_snapshot(&self, instance: &str, snap: &str, new_name: &str) -> Result<()> {
        let body = serde_json::json!({ "name": new_name });
        let resp = self.post(&snapshot_path(instance, snap), &body).await?;
        self.finish(resp).await.map(|_| ())
    }

    /// `PUT /1.0/instances/{name}` `{"restore": snap}`, waiting for the operation.
    pub async fn restore_snapshot(&self, instance: &str, snap: &str, stateful: bool) -> Result<()> {
        let body = serde_json::json!({ "restore": snap, "stateful": stateful });
        let path = format!("/1.0/instances/{}", url::seg(instance));
        let resp = self.put(&path, &body).await?;
        self.finish(resp).await.map(|_| ())
    }
}
