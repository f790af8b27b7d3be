use serde_json::{json, Value};

use super::*;

fn smp(kind: &PatchKind, original: Value, patch: Value) -> Value {
    strategic_merge_patch(&original, &patch, kind).expect("patch applies")
}

fn pod() -> PatchKind {
    PatchKind::builtin("", "Pod")
}

fn deployment() -> PatchKind {
    PatchKind::builtin("apps", "Deployment")
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|items| items.iter().filter_map(|i| i["name"].as_str()).collect())
        .unwrap_or_default()
}

#[test]
fn containers_merge_by_name_keeping_unpatched_fields() {
    let out = smp(
        &pod(),
        json!({"spec": {"containers": [
            {"name": "app", "image": "app:1", "args": ["--v=1"]},
            {"name": "sidecar", "image": "envoy"}
        ]}}),
        json!({"spec": {"containers": [{"name": "app", "image": "app:2"}]}}),
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([
            {"name": "app", "image": "app:2", "args": ["--v=1"]},
            {"name": "sidecar", "image": "envoy"}
        ])
    );
}

#[test]
fn a_new_container_goes_before_the_live_ones_as_in_the_kubectl_patch_docs() {
    let out = smp(
        &deployment(),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "patch-demo-ctr", "image": "nginx"}]}}}}),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "patch-demo-ctr-2", "image": "redis"}]}}}}),
    );
    assert_eq!(
        names(&out["spec"]["template"]["spec"]["containers"]),
        ["patch-demo-ctr-2", "patch-demo-ctr"]
    );
}

#[test]
fn null_deletes_a_field() {
    let out = smp(
        &pod(),
        json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"nodeName": "n1"}}),
        json!({"metadata": {"labels": {"a": null}}, "spec": {"nodeName": null, "missing": null}}),
    );
    assert_eq!(out, json!({"metadata": {"labels": {"b": "2"}}, "spec": {}}));
}

#[test]
fn tolerations_have_no_merge_key_and_are_replaced() {
    let out = smp(
        &pod(),
        json!({"spec": {"tolerations": [{"key": "a", "operator": "Exists"}]}}),
        json!({"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}),
    );
    assert_eq!(
        out["spec"]["tolerations"],
        json!([{"key": "b", "operator": "Exists"}])
    );
}

#[test]
fn env_volume_mounts_and_ports_merge_by_their_own_keys() {
    let out = smp(
        &pod(),
        json!({"spec": {"containers": [{
            "name": "app",
            "env": [{"name": "A", "value": "1"}],
            "volumeMounts": [{"mountPath": "/data", "name": "data"}],
            "ports": [{"containerPort": 80, "name": "http"}]
        }]}}),
        json!({"spec": {"containers": [{
            "name": "app",
            "env": [{"name": "A", "value": "2"}, {"name": "B", "value": "3"}],
            "volumeMounts": [{"mountPath": "/data", "readOnly": true}],
            "ports": [{"containerPort": 80, "protocol": "TCP"}]
        }]}}),
    );
    let c = &out["spec"]["containers"][0];
    assert_eq!(
        c["env"],
        json!([{"name": "A", "value": "2"}, {"name": "B", "value": "3"}])
    );
    assert_eq!(
        c["volumeMounts"],
        json!([{"mountPath": "/data", "name": "data", "readOnly": true}])
    );
    assert_eq!(
        c["ports"],
        json!([{"containerPort": 80, "name": "http", "protocol": "TCP"}])
    );
}

#[test]
fn service_ports_merge_by_port() {
    let out = smp(
        &PatchKind::builtin("", "Service"),
        json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}}),
        json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
    );
    assert_eq!(
        out["spec"]["ports"],
        json!([{"port": 80, "targetPort": 9090}, {"port": 443}])
    );
}

#[test]
fn patch_delete_in_a_list_item_removes_it_by_key() {
    let out = smp(
        &pod(),
        json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
        json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
    );
    assert_eq!(out["spec"]["containers"], json!([{"name": "b"}]));
}

#[test]
fn patch_replace_in_a_list_replaces_the_whole_list() {
    let out = smp(
        &pod(),
        json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b"}]}}),
        json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "c", "image": "y"}]}}),
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "c", "image": "y"}])
    );
}

#[test]
fn patch_replace_in_a_map_replaces_the_map() {
    let out = smp(
        &pod(),
        json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
        json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}),
    );
    assert_eq!(out["metadata"]["labels"], json!({"c": "3"}));
}

#[test]
fn patch_delete_in_a_map_empties_it_and_merge_is_the_default() {
    let out = smp(
        &pod(),
        json!({"spec": {"securityContext": {"runAsUser": 1}, "dnsConfig": {"nameservers": ["1.1.1.1"]}}}),
        json!({"spec": {"securityContext": {"$patch": "delete"}, "dnsConfig": {"$patch": "merge", "searches": ["a"]}}}),
    );
    assert_eq!(out["spec"]["securityContext"], json!({}));
    assert_eq!(
        out["spec"]["dnsConfig"],
        json!({"nameservers": ["1.1.1.1"], "searches": ["a"]})
    );
}

#[test]
fn unknown_patch_directives_and_merge_inside_lists_are_rejected() {
    for patch in [
        json!({"spec": {"$patch": "explode"}}),
        json!({"spec": {"containers": [{"name": "a", "$patch": "merge"}]}}),
    ] {
        let err = strategic_merge_patch(&json!({"spec": {"containers": []}}), &patch, &pod())
            .expect_err("rejected");
        assert!(matches!(err, StrategicError::BadPatchType { .. }), "{err}");
        assert_eq!(err.status_code(), 400);
    }
}

#[test]
fn retain_keys_clears_fields_not_listed_when_switching_deployment_strategy() {
    let out = smp(
        &deployment(),
        json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
    );
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn retain_keys_rejects_a_patch_that_sets_an_unlisted_field() {
    let err = strategic_merge_patch(
        &json!({"spec": {"strategy": {}}}),
        &json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}),
        &deployment(),
    )
    .expect_err("unlisted");
    assert!(matches!(err, StrategicError::BadRetainKeys { .. }));
}

#[test]
fn finalizers_merge_as_a_set_and_delete_from_primitive_list_removes_them() {
    let out = smp(
        &pod(),
        json!({"metadata": {"finalizers": ["a", "b"]}}),
        json!({"metadata": {"finalizers": ["b", "c"], "$deleteFromPrimitiveList/finalizers": ["a"]}}),
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["b", "c"]));
}

#[test]
fn delete_from_primitive_list_on_an_absent_list_changes_nothing() {
    let out = smp(
        &pod(),
        json!({"metadata": {"name": "p"}}),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
    );
    assert_eq!(out, json!({"metadata": {"name": "p"}}));
}

#[test]
fn malformed_delete_from_primitive_list_is_rejected() {
    let err = strategic_merge_patch(
        &json!({"metadata": {"finalizers": ["a"]}}),
        &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
        &pod(),
    )
    .expect_err("not a list");
    assert!(matches!(err, StrategicError::BadPrimitiveList { .. }));
}

#[test]
fn set_element_order_reorders_the_merged_list_and_vanishes() {
    let out = smp(
        &pod(),
        json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}}),
        json!({"spec": {
            "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}],
            "containers": [{"name": "a", "image": "x"}]
        }}),
    );
    assert_eq!(names(&out["spec"]["containers"]), ["c", "a", "b"]);
    assert_eq!(out["spec"]["containers"][1]["image"], "x");
    assert!(out["spec"].get("$setElementOrder/containers").is_none());
}

#[test]
fn set_element_order_keeps_server_only_items_where_the_live_list_had_them() {
    let out = smp(
        &pod(),
        json!({"spec": {"containers": [{"name": "app"}, {"name": "istio-proxy"}, {"name": "log"}]}}),
        json!({"spec": {"$setElementOrder/containers": [{"name": "log"}, {"name": "app"}]}}),
    );
    assert_eq!(
        names(&out["spec"]["containers"]),
        ["istio-proxy", "log", "app"]
    );
}

#[test]
fn set_element_order_for_primitive_lists_orders_finalizers() {
    let out = smp(
        &pod(),
        json!({"metadata": {"finalizers": ["a", "b"]}}),
        json!({"metadata": {"$setElementOrder/finalizers": ["c", "b", "a"], "finalizers": ["c"]}}),
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["c", "b", "a"]));
}

#[test]
fn set_element_order_that_contradicts_the_patch_list_is_rejected() {
    let err = strategic_merge_patch(
        &json!({"spec": {"containers": []}}),
        &json!({"spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "b"}, {"name": "a"}]
        }}),
        &pod(),
    )
    .expect_err("order mismatch");
    assert!(matches!(err, StrategicError::BadSetElementOrder { .. }));
    assert_eq!(err.status_code(), 400);
}

/// The patch `kubectl apply` (client-side) sends after a container was
/// removed from the manifest and another changed: a three-way strategic
/// merge patch with the new last-applied annotation, `$setElementOrder` and
/// a `$patch: delete` item.
#[test]
fn kubectl_apply_three_way_patch_updates_deletes_and_orders_containers() {
    let live = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "annotations": {
                "deployment.kubernetes.io/revision": "1",
                "kubectl.kubernetes.io/last-applied-configuration": "{\"old\":true}"
            }
        },
        "spec": {
            "replicas": 2,
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [
                    {"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                    {"name": "sidecar", "image": "busybox"},
                    {"name": "logger", "image": "fluentbit"}
                ]}
            }
        }
    });
    let patch = json!({
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"new\":true}"}},
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "logger"}, {"name": "nginx"}],
            "containers": [
                {"image": "nginx:1.27", "name": "nginx"},
                {"$patch": "delete", "name": "sidecar"}
            ]
        }}}
    });
    let out = smp(&deployment(), live, patch);

    let containers = &out["spec"]["template"]["spec"]["containers"];
    assert_eq!(names(containers), ["logger", "nginx"]);
    assert_eq!(
        containers[1],
        json!({"name": "nginx", "image": "nginx:1.27", "ports": [{"containerPort": 80, "protocol": "TCP"}]})
    );
    assert_eq!(
        out["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    assert_eq!(
        out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        "{\"new\":true}"
    );
    assert_eq!(out["spec"]["replicas"], 2);
    assert!(
        !out.to_string().contains('$'),
        "no directive survives: {out}"
    );
}

#[test]
fn directives_inside_a_field_new_to_the_object_are_processed() {
    let out = smp(
        &deployment(),
        json!({"spec": {}}),
        json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "a"}],
            "containers": [{"name": "a", "image": "x", "args": null}]
        }}}}),
    );
    assert_eq!(
        out,
        json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}})
    );
}

#[test]
fn list_items_without_the_merge_key_and_lists_of_lists_are_rejected() {
    let err = strategic_merge_patch(
        &json!({"spec": {"containers": [{"name": "a"}]}}),
        &json!({"spec": {"containers": [{"image": "x"}]}}),
        &pod(),
    )
    .expect_err("no key");
    assert!(matches!(err, StrategicError::MissingMergeKey { .. }));
    let err = strategic_merge_patch(
        &json!({"spec": {}}),
        &json!({"spec": {"containers": [["a"]]}}),
        &pod(),
    )
    .expect_err("list of lists");
    assert!(matches!(err, StrategicError::ListOfLists { .. }));
}

#[test]
fn a_patch_that_is_not_an_object_is_rejected() {
    let err = strategic_merge_patch(&json!({}), &json!([1]), &pod()).expect_err("array");
    assert_eq!(err, StrategicError::PatchNotObject);
}

#[test]
fn key_order_of_the_live_object_is_preserved() {
    let out = smp(
        &pod(),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"a": 1}}),
        json!({"metadata": {"labels": {"x": "y"}}}),
    );
    let keys: Vec<&String> = out
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    assert_eq!(keys, ["apiVersion", "kind", "metadata", "spec"]);
}

#[test]
fn retain_keys_inside_volume_items_switches_the_volume_source() {
    let out = smp(
        &pod(),
        json!({"spec": {"volumes": [
            {"name": "data", "emptyDir": {}},
            {"name": "cache", "emptyDir": {"medium": "Memory"}}
        ]}}),
        json!({"spec": {
            "$setElementOrder/volumes": [{"name": "data"}, {"name": "cache"}, {"name": "conf"}],
            "volumes": [
                {"$retainKeys": ["configMap", "name"], "configMap": {"name": "cm"}, "name": "data"},
                {"$retainKeys": ["name", "secret"], "name": "conf", "secret": {"secretName": "s"}}
            ]
        }}),
    );
    assert_eq!(
        out["spec"]["volumes"],
        json!([
            {"name": "data", "configMap": {"name": "cm"}},
            {"name": "cache", "emptyDir": {"medium": "Memory"}},
            {"name": "conf", "secret": {"secretName": "s"}}
        ])
    );
}

#[test]
fn node_pod_cidrs_merge_as_a_set_but_taints_are_replaced() {
    let node = PatchKind::builtin("", "Node");
    let out = smp(
        &node,
        json!({"spec": {"podCIDRs": ["10.0.0.0/24"], "taints": [{"key": "a", "effect": "NoSchedule"}]}}),
        json!({"spec": {"podCIDRs": ["fd00::/64"], "taints": [{"key": "b", "effect": "NoSchedule"}]}}),
    );
    assert_eq!(out["spec"]["podCIDRs"], json!(["fd00::/64", "10.0.0.0/24"]));
    assert_eq!(
        out["spec"]["taints"],
        json!([{"key": "b", "effect": "NoSchedule"}])
    );
}

#[test]
fn owner_references_merge_by_uid_and_conditions_by_type() {
    let out = smp(
        &pod(),
        json!({
            "metadata": {"ownerReferences": [{"uid": "1", "name": "rs"}]},
            "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}
        }),
        json!({
            "metadata": {"ownerReferences": [{"uid": "1", "controller": true}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        }),
    );
    assert_eq!(
        out["metadata"]["ownerReferences"],
        json!([{"uid": "1", "name": "rs", "controller": true}])
    );
    assert_eq!(
        out["status"]["conditions"],
        json!([{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}])
    );
}
