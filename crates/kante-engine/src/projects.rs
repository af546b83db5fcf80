//! Projects and warnings, advertised honestly. Kante has one project,
//! `default`, shown with LXD's fields and the features LXD's default
//! project reports; `?project=default` is accepted on every route and any
//! other project is "not found". Creating, renaming or deleting projects,
//! or changing the default one's features, is refused with a clear 400.
//! Kante records no warnings, so `/1.0/warnings` is an empty list.

use kante_api::project::{Project, ProjectPut};

use crate::error::{EngineError, Result};
use crate::Engine;

/// The one project.
pub const DEFAULT_PROJECT: &str = "default";

/// The features LXD's default project has on.
const FEATURES: &[&str] = &[
    "features.images",
    "features.networks",
    "features.profiles",
    "features.storage.volumes",
];

fn not_found() -> EngineError {
    EngineError::NotFound("Project not found".into())
}

fn unsupported() -> EngineError {
    EngineError::BadRequest("Projects other than default are not supported".into())
}

/// Whether `?project=` names a project that exists (an empty value is
/// the default one).
pub fn project_exists(name: &str) -> bool {
    name.is_empty() || name == DEFAULT_PROJECT
}

/// The `?project=` of a request: `Ok` for the default one, else 404.
pub fn check_project(name: Option<&str>) -> Result<()> {
    match name {
        Some(n) if !project_exists(n) => Err(not_found()),
        _ => Ok(()),
    }
}

fn default_config() -> kante_api::ConfigMap {
    FEATURES
        .iter()
        .map(|k| (k.to_string(), "true".to_string()))
        .collect()
}

impl Engine {
    pub(crate) async fn project_list(&self) -> Result<Vec<Project>> {
        Ok(vec![self.project_get(DEFAULT_PROJECT).await?])
    }

    pub(crate) async fn project_get(&self, name: &str) -> Result<Project> {
        if name != DEFAULT_PROJECT {
            return Err(not_found());
        }
        let mut used_by: Vec<String> = self
            .instance_names()
            .await?
            .into_iter()
            .map(|n| format!("/1.0/instances/{n}"))
            .collect();
        for p in self.profile_list().await? {
            used_by.push(format!("/1.0/profiles/{}", p.name));
        }
        for i in self.image_list(true).await? {
            used_by.push(format!("/1.0/images/{}", i.fingerprint));
        }
        Ok(Project {
            config: default_config(),
            description: "Default LXD project".into(),
            name: DEFAULT_PROJECT.into(),
            used_by,
        })
    }

    /// `POST /1.0/projects`: only the default project exists.
    pub(crate) fn project_create(&self, name: &str) -> Result<()> {
        match name {
            DEFAULT_PROJECT => Err(EngineError::Conflict("The project already exists".into())),
            _ => Err(unsupported()),
        }
    }

    /// PUT/PATCH of a project: the default one's features cannot change;
    /// a body that keeps them (lxc's edit loop saving unchanged) is a
    /// no-op.
    pub(crate) fn project_update(&self, name: &str, put: ProjectPut, merge: bool) -> Result<()> {
        if name != DEFAULT_PROJECT {
            return Err(not_found());
        }
        let current = default_config();
        let same = match merge {
            true => put.config.iter().all(|(k, v)| current.get(k) == Some(v)),
            false => put.config == current,
        };
        if !same {
            return Err(EngineError::BadRequest(
                "The default project's configuration cannot be changed: \
                 projects other than default are not supported"
                    .into(),
            ));
        }
        Ok(())
    }

    /// POST (rename) and DELETE of a project.
    pub(crate) fn project_refuse(&self, name: &str, verb: &str) -> Result<()> {
        if name != DEFAULT_PROJECT {
            return Err(not_found());
        }
        Err(EngineError::Forbidden(format!(
            "The \"default\" project cannot be {verb}"
        )))
    }
}
