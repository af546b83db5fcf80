//! Profiles: list, get, create, update, delete, rename.

pub use kante_api::profile::{Profile, ProfilePut, ProfilesPost};

use crate::client::{url, Client};
use crate::error::Result;

fn profile_path(name: &str) -> String {
    format!("/1.0/profiles/{}", url::seg(name))
}

impl Client {
    /// `GET /1.0/profiles?recursion=1`.
    pub async fn profiles(&self) -> Result<Vec<Profile>> {
        self.get_json("/1.0/profiles?recursion=1").await
    }

    pub async fn profile(&self, name: &str) -> Result<Profile> {
        self.get_json(&profile_path(name)).await
    }

    /// The profile and its `ETag` (for `If-Match` on the following PUT).
    pub async fn profile_with_etag(&self, name: &str) -> Result<(Profile, Option<String>)> {
        let resp = self.get(&profile_path(name)).await?;
        let etag = resp.etag();
        Ok((resp.into_metadata()?, etag))
    }

    /// `POST /1.0/profiles` (201).
    pub async fn create_profile(&self, post: &ProfilesPost) -> Result<()> {
        self.post("/1.0/profiles", post).await.map(|_| ())
    }

    /// `PUT /1.0/profiles/{name}`: replaces config, devices and description.
    pub async fn update_profile(
        &self,
        name: &str,
        put: &ProfilePut,
        etag: Option<&str>,
    ) -> Result<()> {
        let resp = self.put_if_match(&profile_path(name), put, etag).await?;
        self.finish(resp).await.map(|_| ())
    }

    pub async fn delete_profile(&self, name: &str) -> Result<()> {
        let resp = self.delete(&profile_path(name)).await?;
        self.finish(resp).await.map(|_| ())
    }

    /// `POST /1.0/profiles/{name}` `{"name": new}`.
    pub async fn rename_profile(&self, name: &str, new_name: &str) -> Result<()> {
        let body = serde_json::json!({ "name": new_name });
        let resp = self.post(&profile_path(name), &body).await?;
        self.finish(resp).await.map(|_| ())
    }
}
