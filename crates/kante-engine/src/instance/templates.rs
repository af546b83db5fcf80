//! Image templates (`templates:` in the instance's metadata.yaml, files in
//! its `templates/`), rendered into the stopped instance's rootfs at start:
//! those whose `when` names the trigger left in `volatile.apply_template`
//! (create, copy) and those marked `start`, on every start.
//!
//! Files are written as the guest's root: on-disk ids are container ids (the
//! rootfs is shown through an idmapped mount), so that is uid/gid 0 here.
//! Every path is resolved with openat2(RESOLVE_IN_ROOT), so `..` and
//! symlinks in the rootfs never lead out of it.

use std::collections::BTreeMap;
use std::path::Path;

use kante_api::image::{ImageMetadata, ImageTemplate};
use kante_api::{ConfigMap, DevicesMap};
use kante_images::template::{self, Context, Value};
use kante_runtime::rootdir::{self, EntryType, RootDir};
use kante_runtime::sys::Errno;
use kante_store::InstanceRow;

use crate::error::{EngineError, Result};
use crate::instance::{cloudinit, files};
use crate::util::is_true;
use crate::Engine;

/// What templates see of an instance.
#[derive(Debug, Clone)]
pub struct TemplateInstance {
    pub name: String,
    pub architecture: String,
    pub ephemeral: bool,
    pub privileged: bool,
    /// Expanded config and devices.
    pub config: ConfigMap,
    pub devices: DevicesMap,
    /// Local config (for the server-assigned `volatile.<nic>.hwaddr`).
    pub local: ConfigMap,
}

impl Engine {
    /// Renders the templates due at this start. Does nothing for an
    /// instance whose volume has no metadata.yaml (empty instances).
    pub(crate) async fn apply_templates(
        &self,
        row: &InstanceRow,
        econfig: &ConfigMap,
        edevices: &DevicesMap,
    ) -> Result<()> {
        let volume = self.instance_volume(row).await?;
        let trigger = row.config.get("volatile.apply_template").cloned();
        let inst = TemplateInstance {
            name: row.name.clone(),
            architecture: row.architecture.clone(),
            ephemeral: row.ephemeral,
            privileged: is_true(econfig.get("security.privileged")),
            config: econfig.clone(),
            devices: edevices.clone(),
            local: row.config.clone(),
        };
        tokio::task::spawn_blocking(move || apply(&volume, trigger.as_deref(), &inst)).await?
    }
}

/// Applies the templates of the instance volume at `volume` for `trigger`
/// (plus the `start` ones).
pub fn apply(volume: &Path, trigger: Option<&str>, inst: &TemplateInstance) -> Result<()> {
    let meta_path = volume.join("metadata.yaml");
    let text = match std::fs::read_to_string(&meta_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(EngineError::io("reading metadata.yaml", e)),
    };
    let meta: ImageMetadata = serde_yaml::from_str(&text)
        .map_err(|e| EngineError::bad(format!("The instance's metadata.yaml is invalid: {e}")))?;
    let due: Vec<(&String, &ImageTemplate)> = meta
        .templates
        .iter()
        .filter(|(_, t)| {
            t.when
                .iter()
                .any(|w| w == "start" || Some(w.as_str()) == trigger)
        })
        .collect();
    if due.is_empty() {
        return Ok(());
    }
    let root = open_dir(&volume.join("rootfs"))?;
    let tdir = open_dir(&volume.join("templates"))?;
    for (path, tpl) in due {
        let fail = |e: EngineError| EngineError::bad(format!("Template for {path}: {e}"));
        let rel = files::relative_path(path).map_err(fail)?;
        if rel.as_os_str().is_empty() {
            return Err(fail(EngineError::bad("the target is the root directory")));
        }
        if tpl.create_only && root.exists(&rel) {
            continue;
        }
        let source = read_template(&tdir, &tpl.template).map_err(fail)?;
        let out = render(&source, path, trigger.unwrap_or("start"), tpl, inst)
            .map_err(|e| fail(EngineError::bad(e.to_string())))?;
        write_in_root(&root, &rel, out.as_bytes()).map_err(fail)?;
    }
    Ok(())
}

/// Renders one template with LXD's context: `trigger`, `path`, `instance`
/// (and its old name `container`), `config`, `devices`, `properties`,
/// `config_get(key, default)`; plus `nics`, the NICs in device-name order.
pub fn render(
    source: &str,
    path: &str,
    trigger: &str,
    tpl: &ImageTemplate,
    inst: &TemplateInstance,
) -> std::result::Result<String, template::TemplateError> {
    let flag = |b: bool| Value::from(if b { "true" } else { "false" });
    let meta: BTreeMap<String, Value> = [
        ("name", Value::from(inst.name.as_str())),
        ("type", Value::from("container")),
        ("architecture", Value::from(inst.architecture.as_str())),
        ("ephemeral", flag(inst.ephemeral)),
        ("privileged", flag(inst.privileged)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let nics = cloudinit::nics(&inst.devices, &inst.local)
        .into_iter()
        .map(|n| {
            Value::from(BTreeMap::from([
                ("device".to_string(), n.device),
                ("name".to_string(), n.name),
                ("hwaddr".to_string(), n.hwaddr),
            ]))
        })
        .collect();
    let config = &inst.config;
    // LXD's config_get: the value without trailing newlines, else the default.
    let config_get = |args: &[Value]| -> Value {
        let key = match args.first() {
            Some(Value::Str(k)) => k.as_str(),
            _ => return Value::Null,
        };
        match cloudinit::lookup(config, key) {
            Some(v) => Value::from(v.trim_end_matches(['\r', '\n'])),
            None => args.get(1).cloned().unwrap_or(Value::Null),
        }
    };
    let mut ctx = Context::default();
    ctx.vars.insert("trigger".into(), Value::from(trigger));
    ctx.vars.insert("path".into(), Value::from(path));
    ctx.vars.insert("instance".into(), Value::Map(meta.clone()));
    ctx.vars.insert("container".into(), Value::Map(meta));
    ctx.vars
        .insert("config".into(), Value::from(inst.config.clone()));
    ctx.vars.insert(
        "devices".into(),
        Value::Map(
            inst.devices
                .iter()
                .map(|(k, d)| (k.clone(), Value::from(d.clone())))
                .collect(),
        ),
    );
    ctx.vars
        .insert("properties".into(), Value::from(tpl.properties.clone()));
    ctx.vars.insert("nics".into(), Value::List(nics));
    ctx.functions.insert("config_get".into(), &config_get);
    template::render(source, &ctx)
}

fn io_err(what: &str, e: impl Into<std::io::Error>) -> EngineError {
    let e: std::io::Error = e.into();
    match Errno::of(&e) {
        Some(Errno::CrossDevice | Errno::Loop) => {
            EngineError::bad(format!("{what}: the path leads out of the instance"))
        }
        Some(Errno::IsDirectory) => EngineError::bad(format!("{what}: the target is a directory")),
        _ if e.kind() == std::io::ErrorKind::InvalidInput => {
            EngineError::bad(format!("{what}: {}", rootdir::NOT_REGULAR))
        }
        Some(Errno::NotDirectory) => {
            EngineError::bad(format!("{what}: a parent of the target is not a directory"))
        }
        _ => EngineError::io(what, e),
    }
}

fn open_dir(p: &Path) -> Result<RootDir> {
    RootDir::open(p).map_err(|e| io_err(&format!("opening {}", p.display()), e))
}

/// A template file: a plain name in templates/, never a symlink.
fn read_template(tdir: &RootDir, name: &str) -> Result<String> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(EngineError::bad(format!(
            "invalid template file name {name:?}"
        )));
    }
    let f = rootdir::open_nofollow(tdir, name)
        .map_err(|e| io_err(&format!("template file {name}"), e))?;
    let st = rootdir::stat(&f).map_err(|e| io_err(name, e))?;
    if st.kind != EntryType::Regular {
        return Err(EngineError::bad(format!(
            "template file {name} is not a regular file"
        )));
    }
    std::io::read_to_string(f).map_err(|e| EngineError::bad(format!("template file {name}: {e}")))
}

/// Writes `data` at `rel` inside the root, creating missing parents (0755)
/// and a missing file (0644), owned by the guest's root; an existing file
/// keeps its owner and mode.
fn write_in_root(root: &RootDir, rel: &Path, data: &[u8]) -> Result<()> {
    let what = format!("/{}", rel.display());
    root.write_file_as_root(rel, data)
        .map_err(|e| io_err(&what, e))
}

#[cfg(test)]
#[path = "templates_tests.rs"]
mod tests;
