//! The OpenAPI 3.1 description of what kanted serves, made from the route
//! table itself ([`crate::route_table`]): every path and method the router
//! answers, the JSON schema of each request body derived from its Rust type
//! (`schemars`), the query and path parameters, LXD's response envelope.
//! `kanted --openapi` prints it; `docs/openapi.json` is that output, and a
//! test keeps the two equal. LXD serves no such document, so neither does
//! the API.

use schemars::generate::SchemaSettings;
use schemars::Schema;
use serde_json::{json, Map, Value};

use crate::methods::Op;

/// Query parameters every LXD API path takes (the scope of a request, a
/// list's detail and filter).
const LXD_QUERY: &[(&str, &str)] = &[
    ("project", "string"),
    ("target", "string"),
    ("recursion", "integer"),
    ("filter", "string"),
];

/// The document, as a JSON value.
pub fn document() -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    let mut generator = settings.into_generator();
    let envelope = generator.subschema_for::<kante_api::Envelope>();
    let mut paths = Map::new();
    for (pattern, ops) in crate::route_table() {
        let (path, params) = openapi_path(&pattern);
        let item = paths
            .entry(path.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        for op in &ops {
            let operation = operation(&mut generator, &path, &params, op, &envelope);
            item[op.method.to_lowercase()] = operation;
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Kante API (LXD API 1.0)",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "What kanted serves on its unix socket and over HTTPS \
    (core.https_address, trusted client certificates). Generated from the route \
    table and the request types (kanted --openapi); bodies are decoded leniently \
    (null means the default, unknown fields are ignored, config values may be \
    any scalar), so the schemas describe what a client should send.",
        },
        "paths": paths,
        "components": { "schemas": generator.definitions().clone() },
    })
}

/// The document as `docs/openapi.json` holds it (pretty, newline-ended).
pub fn document_text() -> String {
    let mut text = serde_json::to_string_pretty(&document()).expect("a JSON value prints");
    text.push('\n');
    text
}

/// `/1.0/images/aliases/{*name}` as OpenAPI writes it (`{name}`), with
/// the names of its parameters.
fn openapi_path(pattern: &str) -> (String, Vec<String>) {
    let mut params = Vec::new();
    let path = pattern
        .split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => {
                    let name = name.trim_start_matches('*');
                    params.push(name.to_string());
                    format!("{{{name}}}")
                }
                None => seg.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("/");
    (path, params)
}

/// The area a path belongs to (`/1.0/instances/{name}` → `instances`).
fn tag(path: &str) -> &str {
    let rest = path
        .strip_prefix("/1.0/")
        .unwrap_or(path.trim_start_matches('/'));
    match rest.split('/').next() {
        Some("" | "1.0") | None => "server",
        Some(area) => area,
    }
}

fn operation(
    generator: &mut schemars::SchemaGenerator,
    path: &str,
    params: &[String],
    op: &Op,
    envelope: &Schema,
) -> Value {
    let id: String = format!("{}{path}", op.method.to_lowercase())
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let mut parameters: Vec<Value> = params
        .iter()
        .map(|name| {
            json!({
                "name": name,
                "in": "path",
                "required": true,
                "schema": { "type": "string" },
            })
        })
        .collect();
    if op.takes.query {
        let keys = LXD_QUERY
            .iter()
            .copied()
            .chain(op.takes.keys.iter().map(|k| (*k, "string")));
        for (name, kind) in keys {
            parameters.push(json!({
                "name": name,
                "in": "query",
                "required": false,
                "schema": { "type": kind },
            }));
        }
    }
    let mut operation = json!({
        "operationId": id,
        "tags": [tag(path)],
        "parameters": parameters,
        "responses": {
            "default": {
                "description": "LXD's response envelope (sync, async or error); \
    a download, a websocket upgrade or a web-view file answer otherwise",
                "content": { "application/json": { "schema": envelope } },
            },
        },
    });
    let mut content = Map::new();
    if let Some(schema) = op.takes.json {
        content.insert(
            "application/json".into(),
            json!({ "schema": schema(generator) }),
        );
    }
    if op.takes.raw {
        content.insert(
            "application/octet-stream".into(),
            json!({ "schema": { "type": "string", "format": "binary" } }),
        );
    }
    if !content.is_empty() {
        // An empty body (or `null`) is the type's default.
        operation["requestBody"] = json!({ "required": false, "content": content });
    }
    if op.takes.websocket {
        operation["description"] = json!("Upgrades to a websocket (RFC 6455).");
    }
    operation
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_become_plain_parameters() {
        let (path, params) = openapi_path("/1.0/images/aliases/{*name}");
        assert_eq!(path, "/1.0/images/aliases/{name}");
        assert_eq!(params, ["name"]);
        let (path, params) = openapi_path("/1.0/instances/{name}/snapshots/{snap}");
        assert_eq!(path, "/1.0/instances/{name}/snapshots/{snap}");
        assert_eq!(params, ["name", "snap"]);
        assert_eq!(openapi_path("/").0, "/");
    }

    /// `docs/openapi.json` is what the code generates: a route, a method or
    /// a request type changed without the file (or the other way) fails here.
    #[test]
    fn the_committed_document_is_the_generated_one() {
        let committed = include_str!("../../../docs/openapi.json");
        let generated = document_text();
        assert!(
            committed == generated,
            "docs/openapi.json is stale: regenerate it with \
             `kanted --openapi > docs/openapi.json`"
        );
    }

    /// Every route of the router is in the document with exactly its
    /// methods, and every path of the document is a route.
    #[test]
    fn the_document_lists_exactly_the_routes() {
        let doc = document();
        let paths = doc["paths"].as_object().unwrap();
        let mut routed = std::collections::BTreeSet::new();
        for (pattern, ops) in crate::route_table() {
            let (path, _) = openapi_path(&pattern);
            let item = paths
                .get(&path)
                .unwrap_or_else(|| panic!("{path} is not in the document"));
            let mut methods: Vec<String> = ops.iter().map(|o| o.method.to_lowercase()).collect();
            methods.sort();
            let mut described: Vec<String> = item.as_object().unwrap().keys().cloned().collect();
            described.sort();
            assert_eq!(methods, described, "{path}");
            routed.insert(path);
        }
        let documented: std::collections::BTreeSet<String> = paths.keys().cloned().collect();
        assert_eq!(documented, routed);
        // The body types are there: a create of each kind names its schema.
        let create = &paths["/1.0/instances"]["post"]["requestBody"]["content"];
        assert!(create["application/json"]["schema"]["$ref"]
            .as_str()
            .is_some_and(|r| r.ends_with("/InstancesPost")));
        assert!(create["application/octet-stream"].is_object());
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for name in [
            "InstancesPost",
            "InstancePut",
            "ProfilesPost",
            "NetworksPost",
            "ExecPost",
        ] {
            assert!(schemas.contains_key(name), "{name} has no schema");
        }
    }
}
