//! Networks: list, get, create, update, delete, state and leases.

use kante_api::network::{Network, NetworkLease, NetworkPut, NetworkState, NetworksPost};

use crate::client::{url, Client};
use crate::error::Result;

fn network_path(name: &str) -> String {
    format!("/1.0/networks/{}", url::seg(name))
}

/// `path` with LXD's `?target=MEMBER` when a member is named.
fn at(path: &str, target: Option<&str>) -> String {
    match target {
        Some(t) => format!("{path}?target={}", url::query(t)),
        None => path.to_string(),
    }
}

impl Client {
    /// `GET /1.0/networks?recursion=1`: managed networks and host interfaces.
    pub async fn networks(&self) -> Result<Vec<Network>> {
        self.get_json("/1.0/networks?recursion=1").await
    }

    pub async fn network(&self, name: &str) -> Result<Network> {
        self.get_json(&network_path(name)).await
    }

    /// `GET /1.0/networks/{name}?target=MEMBER`: that cluster member's view
    /// (its own keys merged over the global ones).
    pub async fn network_at(&self, name: &str, target: Option<&str>) -> Result<Network> {
        self.get_json(&at(&network_path(name), target)).await
    }

    /// `POST /1.0/networks?target=MEMBER`: that member's own keys, pending
    /// until the create without a target.
    pub async fn create_network_at(&self, post: &NetworksPost, target: Option<&str>) -> Result<()> {
        let resp = self.post(&at("/1.0/networks", target), post).await?;
        self.finish(resp).await.map(|_| ())
    }

    /// `PATCH /1.0/networks/{name}?target=MEMBER`: that member's own keys.
    pub async fn patch_network_at(
        &self,
        name: &str,
        patch: &NetworkPut,
        target: Option<&str>,
    ) -> Result<()> {
        let resp = self.patch(&at(&network_path(name), target), patch).await?;
        self.finish(resp).await.map(|_| ())
    }

    /// The network and its `ETag` (for `If-Match` on the following PUT).
    pub async fn network_with_etag(&self, name: &str) -> Result<(Network, Option<String>)> {
        let resp = self.get(&network_path(name)).await?;
        let etag = resp.etag();
        Ok((resp.into_metadata()?, etag))
    }

    /// `POST /1.0/networks` (201).
    pub async fn create_network(&self, post: &NetworksPost) -> Result<()> {
        let resp = self.post("/1.0/networks", post).await?;
        self.finish(resp).await.map(|_| ())
    }

    /// `PUT /1.0/networks/{name}`: replaces description and config.
    pub async fn update_network(
        &self,
        name: &str,
        put: &NetworkPut,
        etag: Option<&str>,
    ) -> Result<()> {
        let resp = self.put_if_match(&network_path(name), put, etag).await?;
        self.finish(resp).await.map(|_| ())
    }

    /// `PATCH /1.0/networks/{name}`: merges config; an empty value removes the key.
    pub async fn patch_network(&self, name: &str, patch: &NetworkPut) -> Result<()> {
        let resp = self.patch(&network_path(name), patch).await?;
        self.finish(resp).await.map(|_| ())
    }

    pub async fn delete_network(&self, name: &str) -> Result<()> {
        let resp = self.delete(&network_path(name)).await?;
        self.finish(resp).await.map(|_| ())
    }

    /// `POST /1.0/networks/{name}` `{"name": new}`.
    pub async fn rename_network(&self, name: &str, new_name: &str) -> Result<()> {
        let body = serde_json::json!({ "name": new_name });
        let resp = self.post(&network_path(name), &body).await?;
        self.finish(resp).await.map(|_| ())
    }

    pub async fn network_state(&self, name: &str) -> Result<NetworkState> {
        self.get_json(&format!("{}/state", network_path(name)))
            .await
    }

    pub async fn network_leases(&self, name: &str) -> Result<Vec<NetworkLease>> {
        self.get_json(&format!("{}/leases", network_path(name)))
            .await
    }
}
