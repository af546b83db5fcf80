//! The fake daemon's images and aliases.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use hyper::Method;
use kante_api::image::{ImageAlias, ImageAliasRef};
use kante_api::operation::OperationClass;
use kante_api::Envelope;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{decode, done_op, envelope_resp, error, sync, Resp, State};

pub fn image_routes(
    st: &Arc<Mutex<State>>,
    m: Method,
    path: &str,
    query: &str,
    h: &BTreeMap<String, String>,
    body: Vec<u8>,
) -> Resp {
    let rest = path
        .trim_start_matches("/1.0/images")
        .trim_start_matches('/');
    let mut s = st.lock().unwrap();
    if let Some(alias) = rest.strip_prefix("aliases") {
        let alias = decode(alias.trim_start_matches('/'));
        return match (m, alias.as_str()) {
            (Method::GET, "") => {
                sync(serde_json::to_value(s.aliases.values().collect::<Vec<_>>()).unwrap())
            }
            (Method::POST, "") => {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let name = v["name"].as_str().unwrap_or_default().to_string();
                let target = v["target"].as_str().unwrap_or_default().to_string();
                if s.aliases.contains_key(&name) {
                    return error(409, "Alias already exists");
                }
                if !s.images.contains_key(&target) {
                    return error(404, "Image not found");
                }
                if let Some(img) = s.images.get_mut(&target) {
                    img.aliases.push(ImageAliasRef {
                        name: name.clone(),
                        description: String::new(),
                    });
                }
                let a = ImageAlias {
                    description: String::new(),
                    target,
                    name: name.clone(),
                    kind: "container".into(),
                };
                s.aliases.insert(name.clone(), a);
                envelope_resp(
                    201,
                    &Envelope::created(),
                    &[("Location", format!("/1.0/images/aliases/{name}"))],
                )
            }
            (Method::GET, a) => match s.aliases.get(a) {
                Some(x) => sync(serde_json::to_value(x).unwrap()),
                None => error(404, "Image alias not found"),
            },
            (Method::DELETE, a) => match s.aliases.remove(a) {
                Some(removed) => {
                    if let Some(img) = s.images.get_mut(&removed.target) {
                        img.aliases.retain(|r| r.name != removed.name);
                    }
                    sync(json!({}))
                }
                None => error(404, "Image alias not found"),
            },
            _ => error(405, "method not allowed"),
        };
    }
    match (m, rest) {
        (Method::GET, "") => {
            let _ = query;
            sync(serde_json::to_value(s.images.values().collect::<Vec<_>>()).unwrap())
        }
        (Method::POST, "") => {
            let fp = hex::encode(Sha256::digest(&body));
            let filename = h.get("x-lxd-filename").cloned().unwrap_or_default();
            let exists = s.images.contains_key(&fp);
            let entry = s.new_op(OperationClass::Task, "Downloading image", &[], Value::Null);
            let running = entry.snapshot();
            if exists {
                entry.finish(Err("Image with same fingerprint already exists".into()));
            } else {
                s.insert_image(&fp, &filename, body.len() as i64, None);
                entry.op.lock().unwrap().metadata =
                    json!({"fingerprint": fp, "size": body.len().to_string()});
                entry.finish(Ok(()));
            }
            entry.accepted(&running)
        }
        (m, fp) => {
            let matches: Vec<String> = s
                .images
                .keys()
                .filter(|k| k.starts_with(fp))
                .cloned()
                .collect();
            let [fp] = matches.as_slice() else {
                return error(404, "Image not found");
            };
            match m {
                Method::GET => sync(serde_json::to_value(&s.images[fp]).unwrap()),
                Method::DELETE => {
                    s.images.remove(fp);
                    s.aliases.retain(|_, a| a.target != *fp);
                    drop(s);
                    done_op(st, "Deleting image", &[], Ok(()))
                }
                _ => error(405, "method not allowed"),
            }
        }
    }
}
