//! Profiles: list, get, create, update, delete, rename.

use kante_api::serde_util::{devices_map, null_default, string_map};
use kante_api::{ConfigMap, DevicesMap};
use serde::{Deserialize, Serialize};

use crate::client::{url, Client};
use crate::error::Result;

/// A profile as `GET /1.0/profiles/{name}` returns it (fields in lxc's YAML order).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Profile {
    #[serde(default, deserialize_with = "string_map")]
    pub config: ConfigMap,
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    #[serde(default, deserialize_with = "devices_map")]
    pub devices: DevicesMap,
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub used_by: Vec<String>,
}

/// The writable part of a profile (`PUT`/`PATCH` body).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProfilePut {
    #[serde(default, deserialize_with = "string_map")]
    pub config: ConfigMap,
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    #[serde(default, deserialize_with = "devices_map")]
    pub devices: DevicesMap,
}

impl From<&Profile> for ProfilePut {
    fn from(p: &Profile) -> Self {
        ProfilePut {
            config: p.config.clone(),
            description: p.description.clone(),
            devices: p.devices.clone(),
        }
    }
}

/// `POST /1.0/profiles`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProfilesPost {
    pub name: String,
    #[serde(flatten)]
    pub put: ProfilePut,
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_is_flat_and_nulls_are_tolerated() {
        let post = ProfilesPost {
            name: "p1".into(),
            put: ProfilePut {
                description: "d".into(),
                ..Default::default()
            },
        };
        let v = serde_json::to_value(&post).unwrap();
        assert_eq!(v["name"], "p1");
        assert_eq!(v["description"], "d");
        assert!(v["config"].is_object());
        let p: Profile = serde_json::from_value(serde_json::json!({
            "name": "x", "config": null, "devices": null, "used_by": null, "description": null
        }))
        .unwrap();
        assert!(p.used_by.is_empty() && p.devices.is_empty());
    }
}
