//! Storage pools (list, get, create, update, delete, resources) and their
//! custom volumes with snapshots.

use crate::client::{url, Client};
use crate::error::Result;

pub use kante_api::storage::{
    ResourceUsage, StoragePool, StoragePoolPut, StoragePoolResources, StoragePoolsPost,
    StorageVolume, StorageVolumePost, StorageVolumePut, StorageVolumeSnapshot, StorageVolumesPost,
    VolumeSnapshotsPost, VolumeSource,
};

fn pool_path(name: &str) -> String {
    format!("/1.0/storage-pools/{}", url::seg(name))
}

/// A custom volume's URL (only custom volumes are managed by clients).
fn volume_path(pool: &str, vol: &str) -> String {
    format!("{}/volumes/custom/{}", pool_path(pool), url::seg(vol))
}

impl Client {
    /// `GET /1.0/storage-pools?recursion=1`.
    pub async fn storage_pools(&self) -> Result<Vec<StoragePool>> {
        self.get_json("/1.0/storage-pools?recursion=1").await
    }

    pub async fn storage_pool(&self, name: &str) -> Result<StoragePool> {
        self.get_json(&pool_path(name)).await
    }

    /// The pool and its `ETag` (for `If-Match` on the following PUT).
    pub async fn storage_pool_with_etag(
        &self,
        name: &str,
    ) -> Result<(StoragePool, Option<String>)> {
        let resp = self.get(&pool_path(name)).await?;
        let etag = resp.etag();
        Ok((resp.into_metadata()?, etag))
    }

    /// `POST /1.0/storage-pools` (201).
    pub async fn create_storage_pool(&self, post: &StoragePoolsPost) -> Result<()> {
        let resp = self.post("/1.0/storage-pools", post).await?;
        self.finish(resp).await.map(|_| ())
    }

    pub async fn update_storage_pool(
        &self,
        name: &str,
        put: &StoragePoolPut,
        etag: Option<&str>,
    ) -> Result<()> {
        let resp = self.put_if_match(&pool_path(name), put, etag).await?;
        self.finish(resp).await.map(|_| ())
    }

    pub async fn patch_storage_pool(&self, name: &str, patch: &StoragePoolPut) -> Result<()> {
        let resp = self.patch(&pool_path(name), patch).await?;
        self.finish(resp).await.map(|_| ())
    }

    pub async fn delete_storage_pool(&self, name: &str) -> Result<()> {
        let resp = self.delete(&pool_path(name)).await?;
        self.finish(resp).await.map(|_| ())
    }

    pub async fn storage_pool_resources(&self, name: &str) -> Result<StoragePoolResources> {
        self.get_json(&format!("{}/resources", pool_path(name)))
            .await
    }

    /// `GET /1.0/storage-pools/{pool}/volumes?recursion=1` (every type).
    pub async fn storage_volumes(&self, pool: &str) -> Result<Vec<StorageVolume>> {
        self.get_json(&format!("{}/volumes?recursion=1", pool_path(pool)))
            .await
    }

    pub async fn storage_volume(&self, pool: &str, vol: &str) -> Result<StorageVolume> {
        self.get_json(&volume_path(pool, vol)).await
    }

    /// The volume and its `ETag` (for `If-Match` on the following PUT).
    pub async fn storage_volume_with_etag(
        &self,
        pool: &str,
        vol: &str,
    ) -> Result<(StorageVolume, Option<String>)> {
        let resp = self.get(&volume_path(pool, vol)).await?;
        let etag = resp.etag();
        Ok((resp.into_metadata()?, etag))
    }

    /// `POST /1.0/storage-pools/{pool}/volumes/custom`; waits for the copy if any.
    pub async fn create_storage_volume(&self, pool: &str, post: &StorageVolumesPost) -> Result<()> {
        let path = format!("{}/volumes/custom", pool_path(pool));
        let resp = self.post(&path, post).await?;
        self.finish(resp).await.map(|_| ())
    }

    pub async fn update_storage_volume(
        &self,
        pool: &str,
        vol: &str,
        put: &StorageVolumePut,
        etag: Option<&str>,
    ) -> Result<()> {
        let resp = self
            .put_if_match(&volume_path(pool, vol), put, etag)
            .await?;
        self.finish(resp).await.map(|_| ())
    }

    pub async fn patch_storage_volume(
        &self,
        pool: &str,
        vol: &str,
        patch: &StorageVolumePut,
    ) -> Result<()> {
        let resp = self.patch(&volume_path(pool, vol), patch).await?;
        self.finish(resp).await.map(|_| ())
    }

    pub async fn rename_storage_volume(&self, pool: &str, vol: &str, new: &str) -> Result<()> {
        let post = StorageVolumePost {
            name: new.into(),
            ..Default::default()
        };
        let resp = self.post(&volume_path(pool, vol), &post).await?;
        self.finish(resp).await.map(|_| ())
    }

    pub async fn delete_storage_volume(&self, pool: &str, vol: &str) -> Result<()> {
        let resp = self.delete(&volume_path(pool, vol)).await?;
        self.finish(resp).await.map(|_| ())
    }

    pub async fn storage_volume_snapshots(
        &self,
        pool: &str,
        vol: &str,
    ) -> Result<Vec<StorageVolumeSnapshot>> {
        self.get_json(&format!("{}/snapshots?recursion=1", volume_path(pool, vol)))
            .await
    }

    /// `POST .../snapshots`; waits for the operation.
    pub async fn create_storage_volume_snapshot(
        &self,
        pool: &str,
        vol: &str,
        snap: &str,
    ) -> Result<()> {
        let post = VolumeSnapshotsPost { name: snap.into() };
        let path = format!("{}/snapshots", volume_path(pool, vol));
        let resp = self.post(&path, &post).await?;
        self.finish(resp).await.map(|_| ())
    }

    pub async fn delete_storage_volume_snapshot(
        &self,
        pool: &str,
        vol: &str,
        snap: &str,
    ) -> Result<()> {
        let path = format!("{}/snapshots/{}", volume_path(pool, vol), url::seg(snap));
        let resp = self.delete(&path).await?;
        self.finish(resp).await.map(|_| ())
    }

    /// Restores a snapshot: a PUT carrying only `restore`.
    pub async fn restore_storage_volume(&self, pool: &str, vol: &str, snap: &str) -> Result<()> {
        let put = StorageVolumePut {
            restore: snap.into(),
            ..Default::default()
        };
        let resp = self.put(&volume_path(pool, vol), &put).await?;
        self.finish(resp).await.map(|_| ())
    }
}
