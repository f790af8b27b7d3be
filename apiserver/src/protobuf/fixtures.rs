//! Bodies captured from kubectl 1.32 (`kubectl create ...` against a stub
//! server), each checked against what the same command prints with
//! `--dry-run=client -o json`. The only difference Go's JSON has is
//! `creationTimestamp: null`, which the decoder leaves out.

use serde_json::Value;

use super::decode;

/// The dry-run JSON without `null`s, which mean "unset" to skiff as to Kubernetes.
fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

fn assert_matches_dry_run(body: &[u8], dry_run_json: &str) {
    let decoded = decode(body).expect("kubectl's body decodes");
    let expected: Value = serde_json::from_str(dry_run_json).expect("fixture JSON parses");
    assert_eq!(decoded, without_nulls(expected));
}

macro_rules! fixture {
    ($test:ident, $name:literal) => {
        #[test]
        fn $test() {
            assert_matches_dry_run(
                include_bytes!(concat!("fixtures/", $name, ".pb")),
                include_str!(concat!("fixtures/", $name, ".json")),
            );
        }
    };
}

// kubectl create namespace x
fixture!(kubectl_create_namespace_decodes_like_its_json, "namespace");
// kubectl create configmap c --from-literal=a=b --from-literal=empty=
fixture!(kubectl_create_configmap_keeps_empty_values, "configmap");
// kubectl create secret generic s --from-literal=user=admin --from-literal=pass='p@ss w0rd'
fixture!(kubectl_create_secret_sends_base64_data, "secret");
// kubectl create deployment d --image=nginx --replicas=2 --port=80
fixture!(
    kubectl_create_deployment_decodes_like_its_json,
    "deployment"
);
// kubectl create deployment zero --image=nginx --replicas=0
fixture!(
    kubectl_create_deployment_keeps_zero_replicas,
    "deployment_zero_replicas"
);
// kubectl create service clusterip s --tcp=80:8080 --tcp=443:https
fixture!(
    kubectl_create_service_has_numeric_and_named_target_ports,
    "service"
);
// kubectl create serviceaccount sa
fixture!(
    kubectl_create_serviceaccount_decodes_like_its_json,
    "serviceaccount"
);
// kubectl create job j --image=busybox -- echo hi
fixture!(kubectl_create_job_decodes_like_its_json, "job");
// kubectl create priorityclass high --value=1000 --description="high prio" --preemption-policy=Never
fixture!(
    kubectl_create_priorityclass_decodes_like_its_json,
    "priorityclass"
);
// kubectl create poddisruptionbudget pdb --selector=app=web --min-available=50%
fixture!(kubectl_create_pdb_keeps_a_percentage, "pdb_min_available");
// kubectl create poddisruptionbudget pdb0 --selector=app=web --max-unavailable=0
fixture!(
    kubectl_create_pdb_keeps_max_unavailable_zero,
    "pdb_max_unavailable_zero"
);

#[test]
fn kubectl_bodies_start_with_the_magic_and_name_their_kind() {
    let v = decode(include_bytes!("fixtures/namespace.pb")).expect("decodes");
    assert_eq!(
        (v["apiVersion"].as_str(), v["kind"].as_str()),
        (Some("v1"), Some("Namespace"))
    );
    let keys: Vec<&str> = v
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(keys.get(..2), Some(&["apiVersion", "kind"][..]));
}
// kubectl create token robot --duration 10m --bound-object-kind Pod --bound-object-name web --bound-object-uid abc
// (the JSON is the Go struct's encoding: kubectl create token has no --dry-run)
fixture!(
    kubectl_create_token_sends_a_protobuf_token_request,
    "tokenrequest"
);
