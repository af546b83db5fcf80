//! Restricted client certificates, as LXD has them (`restricted: true`
//! and a list of `projects` on a trust store record, set by `config
//! trust add --restricted --projects …` or `trust edit`): such a client
//! reaches only the projects listed (none when the list is empty) and
//! never changes the server as a whole — its config, the trust store,
//! storage pools, projects, the cluster — nor opens a web view session.
//! Kante has one project, `default`, so a restricted certificate either
//! lists it and works on everything inside it, or lists none and is left
//! with the server-wide reads (its project list, filtered by the engine,
//! is then empty, as LXD's is). Decided from the method and the path alone
//! by the trust gate, before a request is read or forwarded to another
//! member (which would see the forwarding member, not the client).

use super::path_matches;
use crate::projects::DEFAULT_PROJECT;

/// What no restricted certificate may do: server-wide changes, and the
/// members' internal routes.
pub const ADMIN_ROUTES: &[(&str, &str)] = &[
    ("PUT", "/1.0"),
    ("PATCH", "/1.0"),
    ("POST", "/1.0/certificates"),
    ("PUT", "/1.0/certificates/{fp}"),
    ("PATCH", "/1.0/certificates/{fp}"),
    ("DELETE", "/1.0/certificates/{fp}"),
    ("POST", "/1.0/storage-pools"),
    ("PUT", "/1.0/storage-pools/{pool}"),
    ("PATCH", "/1.0/storage-pools/{pool}"),
    ("DELETE", "/1.0/storage-pools/{pool}"),
    ("POST", "/1.0/projects"),
    ("PUT", "/1.0/projects/{name}"),
    ("PATCH", "/1.0/projects/{name}"),
    ("POST", "/1.0/projects/{name}"),
    ("DELETE", "/1.0/projects/{name}"),
    ("PUT", "/1.0/cluster"),
    ("POST", "/1.0/cluster/members"),
    ("PUT", "/1.0/cluster/members/{name}"),
    ("PATCH", "/1.0/cluster/members/{name}"),
    ("POST", "/1.0/cluster/members/{name}"),
    ("DELETE", "/1.0/cluster/members/{name}"),
    ("POST", "/1.0/cluster/members/{name}/state"),
    ("POST", "/1.0/cluster/groups"),
    ("PUT", "/1.0/cluster/groups/{name}"),
    ("PATCH", "/1.0/cluster/groups/{name}"),
    ("POST", "/1.0/cluster/groups/{name}"),
    ("DELETE", "/1.0/cluster/groups/{name}"),
    ("PUT", "/1.0/warnings/{id}"),
    ("PATCH", "/1.0/warnings/{id}"),
    ("DELETE", "/1.0/warnings/{id}"),
    ("POST", "/ui/login"),
];

/// Server-wide reads any trusted client may make, whatever its projects.
pub const SERVER_READS: &[&str] = &[
    "/",
    "/1.0",
    "/1.0/certificates",
    "/1.0/certificates/{fp}",
    "/1.0/storage-pools",
    "/1.0/storage-pools/{pool}",
    "/1.0/storage-pools/{pool}/resources",
    "/1.0/resources",
    // Filtered to the certificate's projects by the engine.
    "/1.0/projects",
    "/1.0/cluster",
    "/1.0/cluster/members",
    "/1.0/cluster/members/{name}",
    "/1.0/cluster/members/{name}/state",
    "/1.0/cluster/groups",
    "/1.0/cluster/groups/{name}",
];

/// Why a certificate restricted to `projects` may not send `method` to
/// `path`, or `None` when it may. Everything that is neither a
/// server-wide change nor a server-wide read is inside a project (the
/// default one: `?project=` of another is "not found" anyway).
pub fn restricted_refusal(method: &str, path: &str, projects: &[String]) -> Option<String> {
    let admin = path.starts_with("/internal/")
        || ADMIN_ROUTES
            .iter()
            .any(|(m, p)| *m == method && path_matches(p, path));
    if admin {
        return Some("not authorized: a restricted certificate cannot change the server".into());
    }
    let read =
        matches!(method, "GET" | "HEAD") && SERVER_READS.iter().any(|p| path_matches(p, path));
    if read || projects.iter().any(|p| p == DEFAULT_PROJECT) {
        return None;
    }
    Some(format!(
        "not authorized: the certificate is restricted to {}",
        if projects.is_empty() {
            "no project".to_string()
        } else {
            format!("projects {}", projects.join(", "))
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_default_project_certificate_works_inside_but_never_on_the_server() {
        let d = v(&["default"]);
        for (m, p) in [
            ("GET", "/1.0/instances"),
            ("POST", "/1.0/instances"),
            ("POST", "/1.0/instances/c1/exec"),
            ("DELETE", "/1.0/instances/c1"),
            ("GET", "/1.0/events"),
            ("POST", "/1.0/networks"),
            ("POST", "/1.0/storage-pools/default/volumes/custom"),
            ("GET", "/1.0/storage-pools"),
            ("GET", "/1.0"),
        ] {
            assert_eq!(restricted_refusal(m, p, &d), None, "{m} {p}");
        }
        for (m, p) in [
            ("PUT", "/1.0"),
            ("PATCH", "/1.0"),
            ("POST", "/1.0/certificates"),
            ("DELETE", "/1.0/certificates/abcd"),
            ("POST", "/1.0/storage-pools"),
            ("DELETE", "/1.0/storage-pools/default"),
            ("POST", "/1.0/cluster/members"),
            ("POST", "/1.0/cluster/members/h2/state"),
            ("PUT", "/1.0/projects/default"),
            ("POST", "/ui/login"),
            ("GET", "/internal/cluster/images/x"),
        ] {
            let why = restricted_refusal(m, p, &d).unwrap_or_default();
            assert!(why.contains("cannot change the server"), "{m} {p}: {why:?}");
        }
    }

    #[test]
    fn a_certificate_of_no_project_reads_only_the_server() {
        for projects in [v(&[]), v(&["web"])] {
            assert_eq!(restricted_refusal("GET", "/1.0", &projects), None);
            assert_eq!(
                restricted_refusal("GET", "/1.0/storage-pools/p", &projects),
                None
            );
            for (m, p) in [
                ("GET", "/1.0/instances"),
                ("GET", "/1.0/images"),
                ("GET", "/1.0/operations/x/websocket"),
                ("GET", "/1.0/projects/default"),
                ("POST", "/1.0/storage-pools/default/volumes/custom"),
            ] {
                let why = restricted_refusal(m, p, &projects).unwrap_or_default();
                assert!(
                    why.starts_with("not authorized: the certificate is restricted to"),
                    "{m} {p}: {why:?}"
                );
            }
        }
        let why = restricted_refusal("GET", "/1.0/instances", &[]).unwrap_or_default();
        assert!(why.ends_with("to no project"), "{why}");
    }
}
