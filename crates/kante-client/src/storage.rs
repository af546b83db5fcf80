//! Storage pools: list, get, create, update, delete, resources.

use kante_api::serde_util::{null_default, string_map};
use kante_api::ConfigMap;
use serde::{Deserialize, Serialize};

use crate::client::{url, Client};
use crate::error::Result;

/// A pool as `GET /1.0/storage-pools/{name}` returns it (fields in lxc's YAML order).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoragePool {
    #[serde(default, deserialize_with = "string_map")]
    pub config: ConfigMap,
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub driver: String,
    #[serde(default, deserialize_with = "null_default")]
    pub used_by: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub status: String,
    #[serde(default, deserialize_with = "null_default")]
    pub locations: Vec<String>,
}

/// `POST /1.0/storage-pools`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoragePoolsPost {
    pub name: String,
    pub driver: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub config: ConfigMap,
}

/// `PUT`/`PATCH /1.0/storage-pools/{name}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoragePoolPut {
    #[serde(default, deserialize_with = "string_map")]
    pub config: ConfigMap,
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
}

impl From<&StoragePool> for StoragePoolPut {
    fn from(p: &StoragePool) -> Self {
        StoragePoolPut {
            config: p.config.clone(),
            description: p.description.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ResourceUsage {
    #[serde(default)]
    pub used: u64,
    #[serde(default)]
    pub total: u64,
}

/// `GET /1.0/storage-pools/{name}/resources`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoragePoolResources {
    #[serde(default)]
    pub space: ResourceUsage,
    #[serde(default)]
    pub inodes: ResourceUsage,
}

fn pool_path(name: &str) -> String {
    format!("/1.0/storage-pools/{}", url::seg(name))
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
}
