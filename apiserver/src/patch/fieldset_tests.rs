use serde_json::json;

use super::*;

fn deployment() -> PatchKind {
    PatchKind::builtin("apps", "Deployment")
}

fn path(elems: &[&str]) -> FieldPath {
    elems.iter().map(|e| e.to_string()).collect()
}

#[test]
fn members_of_an_applied_deployment_match_kubernetes_fields_v1() {
    let kind = deployment();
    let walker = Walker { kind: &kind };
    let config = json!({
        "metadata": {"labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}
        }
    });
    let fields = walker.members(&config).to_fields_v1();
    assert_eq!(
        fields,
        json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}
                }}}
            }
        })
    );
}

#[test]
fn fields_v1_round_trips_through_a_field_set() {
    let fields = json!({
        "f:metadata": {"f:finalizers": {"v:\"a\"": {}}, "f:labels": {".": {}, "f:app": {}}},
        "f:spec": {"f:ports": {"k:{\"port\":80}": {".": {}, "f:port": {}}}}
    });
    let set = FieldSet::from_fields_v1(&fields);
    assert!(set.contains(&path(&["f:metadata", "f:labels"])));
    assert!(set.contains(&path(&["f:metadata", "f:finalizers", "v:\"a\""])));
    assert_eq!(set.to_fields_v1(), fields);
}

#[test]
fn paths_print_as_kubernetes_prints_them_in_conflicts() {
    let p = path(&[
        "f:spec",
        "f:containers",
        "k:{\"name\":\"nginx\"}",
        "f:image",
    ]);
    assert_eq!(path_string(&p), ".spec.containers[name=\"nginx\"].image");
    let p = path(&["f:metadata", "f:finalizers", "v:\"x\""]);
    assert_eq!(path_string(&p), ".metadata.finalizers[=\"x\"]");
}

#[test]
fn compare_reports_added_modified_and_removed_fields() {
    let kind = deployment();
    let walker = Walker { kind: &kind };
    let old = json!({"spec": {"replicas": 1, "paused": false,
        "template": {"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b"}]}}}});
    let new = json!({"spec": {"replicas": 3, "minReadySeconds": 5,
        "template": {"spec": {"containers": [{"name": "a", "image": "y"}, {"name": "c"}]}}}});
    let cmp = walker.compare(&old, &new);
    let containers = ["f:spec", "f:template", "f:spec", "f:containers"];
    let item = |name: &str, rest: &[&str]| {
        let mut p = path(&containers);
        p.push(format!("k:{{\"name\":\"{name}\"}}"));
        p.extend(rest.iter().map(|s| s.to_string()));
        p
    };
    assert!(cmp.modified.contains(&path(&["f:spec", "f:replicas"])));
    assert!(cmp.modified.contains(&item("a", &["f:image"])));
    assert!(cmp.added.contains(&path(&["f:spec", "f:minReadySeconds"])));
    assert!(cmp.added.contains(&item("c", &[])));
    assert!(cmp.removed.contains(&path(&["f:spec", "f:paused"])));
    assert!(cmp.removed.contains(&item("b", &[])));
    assert!(!cmp.modified.contains(&item("a", &["f:name"])));
}

#[test]
fn merge_keeps_live_only_items_in_place_and_follows_config_order() {
    let kind = PatchKind::builtin("", "Pod");
    let walker = Walker { kind: &kind };
    let live = json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "x"}, {"name": "b"}]}});
    let config = json!({"spec": {"containers": [{"name": "b", "image": "2"}, {"name": "n"}, {"name": "a"}]}});
    let merged = walker.merge(Some(&live), &config).expect("merged");
    assert_eq!(
        merged["spec"]["containers"],
        json!([{"name": "x"}, {"name": "b", "image": "2"}, {"name": "n"}, {"name": "a", "image": "1"}])
    );
}

#[test]
fn remove_drops_emptied_objects_but_never_a_key_field() {
    let kind = PatchKind::builtin("", "Pod");
    let walker = Walker { kind: &kind };
    let mut obj = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
    walker.remove(&mut obj, &path(&["f:metadata", "f:labels", "f:a"]));
    let item = ["f:spec", "f:containers", "k:{\"name\":\"c\"}"];
    walker.remove(&mut obj, &path(&[item[0], item[1], item[2], "f:name"]));
    walker.remove(&mut obj, &path(&[item[0], item[1], item[2], "f:image"]));
    assert_eq!(obj, json!({"spec": {"containers": [{"name": "c"}]}}));
    walker.remove(&mut obj, &path(&item));
    assert_eq!(obj, json!({"spec": {"containers": []}}));
}

#[test]
fn covers_finds_a_path_or_its_descendants() {
    let mut set = FieldSet::default();
    set.insert(path(&["f:spec", "f:template", "f:spec"]));
    assert!(set.covers(&path(&["f:spec"])));
    assert!(set.covers(&path(&["f:spec", "f:template", "f:spec"])));
    assert!(!set.covers(&path(&["f:spec", "f:replicas"])));
}
