//! `GET /1.0/instances` at each recursion level, with and without a filter:
//! the fast paths (names without rendering; profiles read once per list;
//! metadata serialised without a `Value` tree) must give what the per-instance
//! path gives, expanded profiles included.

use kante_client::ClientError;
use kante_integration::{Daemon, TestImage};
use serde_json::{json, Value};

async fn list(d: &Daemon, query: &str) -> Vec<Value> {
    d.client
        .get_json(&format!("/1.0/instances?{query}"))
        .await
        .unwrap_or_else(|e| panic!("GET /1.0/instances?{query}: {e}"))
}

fn names(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| match i {
            Value::String(url) => url.clone(),
            obj if obj.get("instance").is_none() => obj["name"].as_str().unwrap().to_string(),
            full => full["instance"]["name"].as_str().unwrap().to_string(),
        })
        .collect()
}

#[test]
fn lists_expand_profiles_and_filter_at_every_recursion() {
    kante_integration::run(async {
        let d = Daemon::start().await;
        let fp = d.import(TestImage::Busybox).await;
        d.client
            .post(
                "/1.0/profiles",
                &json!({"name": "web", "config": {"user.role": "web"}}),
            )
            .await
            .unwrap();
        d.create(&fp, "a", &[]).await;
        d.create(&fp, "b", &[("user.own", "yes")]).await;
        d.client
            .patch("/1.0/instances/b", &json!({"profiles": ["default", "web"]}))
            .await
            .unwrap();
        d.launch(&fp, "c", &[]).await;

        // recursion=0: URLs of all three, in name order.
        assert_eq!(
            names(&list(&d, "recursion=0").await),
            ["/1.0/instances/a", "/1.0/instances/b", "/1.0/instances/c"]
        );

        // recursion=1: each instance as GET /1.0/instances/<name> shows it.
        let full = list(&d, "recursion=1").await;
        assert_eq!(names(&full), ["a", "b", "c"]);
        for item in &full {
            let name = item["name"].as_str().unwrap();
            let one: Value = d
                .client
                .get_json(&format!("/1.0/instances/{name}"))
                .await
                .unwrap();
            assert_eq!(item, &one, "list entry of {name} differs from its GET");
        }
        let b = &full[1];
        assert_eq!(b["expanded_config"]["user.role"], "web");
        assert_eq!(b["expanded_config"]["user.own"], "yes");
        assert!(full[0]["expanded_config"].get("user.role").is_none());
        assert!(b["expanded_devices"].get("root").is_some());
        assert_eq!(full[2]["status"], "Running");
        assert_eq!(full[0]["status"], "Stopped");

        // The typed client reads the same list.
        let typed = d.client.instances().await.unwrap();
        assert_eq!(
            typed.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert_eq!(typed[1].expanded_config["user.role"], "web");

        // recursion=2 adds state: the running one has a pid.
        let with_state = list(&d, "recursion=2").await;
        assert_eq!(names(&with_state), ["a", "b", "c"]);
        assert!(with_state[2]["state"]["pid"].as_i64().unwrap() > 0);
        assert_eq!(with_state[0]["state"]["status"], "Stopped");

        // A filter applies at every level.
        for r in 0..3 {
            let q = format!("recursion={r}&filter=name%20eq%20b");
            assert_eq!(list(&d, &q).await.len(), 1, "{q}");
            let q = format!("recursion={r}&filter=status%20eq%20running");
            let hit = names(&list(&d, &q).await);
            assert_eq!(hit.len(), 1, "{q}");
            assert!(hit[0].ends_with('c'), "{q}: {hit:?}");
            let q = format!("recursion={r}&filter=config.user.own%20eq%20yes");
            assert!(names(&list(&d, &q).await)[0].ends_with('b'), "{q}");
        }

        // A malformed filter is a 400, whatever the recursion.
        for r in 0..3 {
            match d
                .client
                .get(&format!("/1.0/instances?recursion={r}&filter=name%20eq"))
                .await
            {
                Err(ClientError::Api { status, message }) => {
                    assert_eq!(status, 400);
                    assert!(message.contains("Invalid filter"), "{message}");
                }
                other => panic!("malformed filter at recursion={r}: {other:?}"),
            }
        }

        d.shutdown().await;
    });
}
