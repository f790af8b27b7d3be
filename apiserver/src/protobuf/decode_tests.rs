//! Decoder behaviour on hand-encoded bodies. Field numbers are Kubernetes'
//! (generated.proto); the comments name each field.

use serde_json::{json, Value};

use super::go_duration;
use crate::protobuf::{decode, ProtobufError};

// ---- a tiny protobuf encoder, enough to write test bodies ----

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A varint field (int32, int64, bool).
fn int(tag: u32, v: i64) -> Vec<u8> {
    let mut out = Vec::new();
    varint(u64::from(tag) << 3, &mut out);
    varint(v as u64, &mut out);
    out
}

/// A length-delimited field (string, bytes).
fn bytes(tag: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint(u64::from(tag) << 3 | 2, &mut out);
    varint(data.len() as u64, &mut out);
    out.extend_from_slice(data);
    out
}

fn string(tag: u32, s: &str) -> Vec<u8> {
    bytes(tag, s.as_bytes())
}

/// A nested message made of the given fields.
fn msg(tag: u32, fields: &[Vec<u8>]) -> Vec<u8> {
    bytes(tag, &fields.concat())
}

/// A `map<string, string>` entry.
fn entry(tag: u32, key: &str, value: &str) -> Vec<u8> {
    msg(tag, &[string(1, key), string(2, value)])
}

/// `k8s\0` + runtime.Unknown{typeMeta, raw}.
fn body(api_version: &str, kind: &str, fields: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"k8s\0".to_vec();
    out.extend(msg(1, &[string(1, api_version), string(2, kind)]));
    out.extend(msg(2, fields));
    out
}

fn decoded(api_version: &str, kind: &str, fields: &[Vec<u8>]) -> Value {
    decode(&body(api_version, kind, fields)).expect("decodes")
}

// ---- behaviour ----

#[test]
fn zero_values_of_plain_omitempty_fields_are_dropped_like_go_json_does() {
    // Service: metadata{name "s", namespace ""}, spec{clusterIP "", type "ClusterIP",
    // publishNotReadyAddresses false, healthCheckNodePort 0}
    let v = decoded(
        "v1",
        "Service",
        &[
            msg(1, &[string(1, "s"), string(3, "")]),
            msg(
                2,
                &[
                    string(3, ""),
                    string(4, "ClusterIP"),
                    int(13, 0),
                    int(12, 0),
                ],
            ),
        ],
    );
    assert_eq!(
        v,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"type": "ClusterIP"}})
    );
}

#[test]
fn zero_values_of_pointer_fields_are_kept_because_the_client_set_them() {
    // Pod spec: automountServiceAccountToken false, terminationGracePeriodSeconds 0,
    // securityContext{runAsUser 0}, containers[{name "c", securityContext{allowPrivilegeEscalation false}}]
    let v = decoded(
        "v1",
        "Pod",
        &[msg(
            2,
            &[
                int(21, 0),
                int(4, 0),
                msg(14, &[int(2, 0)]),
                msg(2, &[string(1, "c"), msg(15, &[int(7, 0)])]),
            ],
        )],
    );
    assert_eq!(
        v["spec"],
        json!({
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 0,
            "securityContext": {"runAsUser": 0},
            "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": false}}],
        })
    );
}

#[test]
fn zero_values_of_fields_without_omitempty_are_kept() {
    // Container.name has no omitempty; ContainerPort.containerPort neither.
    let v = decoded(
        "v1",
        "Pod",
        &[msg(2, &[msg(2, &[string(1, ""), msg(6, &[int(3, 0)])])])],
    );
    assert_eq!(
        v["spec"]["containers"],
        json!([{"name": "", "ports": [{"containerPort": 0}]}])
    );
}

#[test]
fn endpoint_conditions_keep_an_explicit_not_ready() {
    // EndpointSlice: addressType "IPv4", endpoints[{addresses ["10.0.0.1"], conditions{ready false, serving true}}]
    let v = decoded(
        "discovery.k8s.io/v1",
        "EndpointSlice",
        &[
            string(4, "IPv4"),
            msg(2, &[string(1, "10.0.0.1"), msg(2, &[int(1, 0), int(2, 1)])]),
        ],
    );
    assert_eq!(
        v["endpoints"],
        json!([{"addresses": ["10.0.0.1"], "conditions": {"ready": false, "serving": true}}])
    );
}

#[test]
fn inline_messages_merge_into_their_parent_like_volume_sources_and_probe_handlers() {
    // Pod spec: volumes[{name "data", volumeSource{emptyDir{sizeLimit "1Gi"}}}],
    // containers[{name "c", livenessProbe{handler{httpGet{path "/", port 8080}}, periodSeconds 5}}]
    let quantity = |tag, q: &str| msg(tag, &[string(1, q)]);
    let int_or_string = |tag, n| msg(tag, &[int(1, 0), int(2, n), string(3, "")]);
    let v = decoded(
        "v1",
        "Pod",
        &[msg(
            2,
            &[
                msg(
                    1,
                    &[string(1, "data"), msg(2, &[msg(2, &[quantity(2, "1Gi")])])],
                ),
                msg(
                    2,
                    &[
                        string(1, "c"),
                        msg(
                            10,
                            &[
                                msg(1, &[msg(2, &[string(1, "/"), int_or_string(2, 8080)])]),
                                int(4, 5),
                            ],
                        ),
                    ],
                ),
            ],
        )],
    );
    assert_eq!(
        v["spec"]["volumes"],
        json!([{"name": "data", "emptyDir": {"sizeLimit": "1Gi"}}])
    );
    assert_eq!(
        v["spec"]["containers"][0]["livenessProbe"],
        json!({"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 5})
    );
}

#[test]
fn quantities_in_resource_maps_become_strings() {
    // containers[{name "c", resources{limits{cpu: "500m"}, requests{memory: "64Mi"}}}]
    let q = |tag, k: &str, v: &str| msg(tag, &[string(1, k), msg(2, &[string(1, v)])]);
    let v = decoded(
        "v1",
        "Pod",
        &[msg(
            2,
            &[msg(
                2,
                &[
                    string(1, "c"),
                    msg(8, &[q(1, "cpu", "500m"), q(2, "memory", "64Mi")]),
                ],
            )],
        )],
    );
    assert_eq!(
        v["spec"]["containers"][0]["resources"],
        json!({"limits": {"cpu": "500m"}, "requests": {"memory": "64Mi"}})
    );
}

#[test]
fn int_or_string_is_a_number_or_a_string_and_a_pointer_zero_survives() {
    // Deployment spec.strategy{type "RollingUpdate", rollingUpdate{maxUnavailable 0, maxSurge "25%"}}
    let v = decoded(
        "apps/v1",
        "Deployment",
        &[msg(
            2,
            &[msg(
                4,
                &[
                    string(1, "RollingUpdate"),
                    msg(
                        2,
                        &[
                            msg(1, &[int(1, 0), int(2, 0)]),
                            msg(2, &[int(1, 1), string(3, "25%")]),
                        ],
                    ),
                ],
            )],
        )],
    );
    assert_eq!(
        v["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}})
    );
    // ServicePort.targetPort is not a pointer: Go's zero IntOrString means "unset".
    let svc = decoded(
        "v1",
        "Service",
        &[msg(
            2,
            &[msg(1, &[int(3, 80), msg(4, &[int(1, 0), int(2, 0)])])],
        )],
    );
    assert_eq!(svc["spec"]["ports"], json!([{"port": 80}]));
}

#[test]
fn times_are_rfc3339_micro_times_have_six_digits_and_zero_times_are_unset() {
    // Lease spec{acquireTime, renewTime} (MicroTime); metadata{creationTimestamp set, deletionTimestamp zero}
    let ts = |tag, s: i64, n: i64| msg(tag, &[int(1, s), int(2, n)]);
    let v = decoded(
        "coordination.k8s.io/v1",
        "Lease",
        &[
            msg(
                1,
                &[
                    string(1, "l"),
                    ts(8, 1_700_000_000, 999_000_000),
                    msg(9, &[]),
                ],
            ),
            msg(2, &[ts(3, 1_700_000_000, 1_500), ts(4, 0, 0), int(2, 15)]),
        ],
    );
    assert_eq!(
        v["metadata"],
        json!({"name": "l", "creationTimestamp": "2023-11-14T22:13:20Z"})
    );
    assert_eq!(
        v["spec"],
        json!({"acquireTime": "2023-11-14T22:13:20.000001Z", "renewTime": "1970-01-01T00:00:00.000000Z", "leaseDurationSeconds": 15})
    );
}

#[test]
fn secret_data_is_base64_and_negative_ints_survive_sign_extension() {
    // Secret data{"k": [0, 255]}; Event count -1 (int32 on the wire as a 10-byte varint)
    let secret = decoded(
        "v1",
        "Secret",
        &[msg(2, &[string(1, "k"), bytes(2, &[0, 255])])],
    );
    assert_eq!(secret["data"], json!({"k": "AP8="}));
    let event = decoded("v1", "Event", &[int(8, -1)]);
    assert_eq!(event["count"], json!(-1));
}

#[test]
fn repeated_ints_decode_packed_or_unpacked() {
    // PodSecurityContext.supplementalGroups: unpacked 1, 2 then packed [3, 4]
    let packed = bytes(4, &[3, 4]);
    let v = decoded(
        "v1",
        "Pod",
        &[msg(2, &[msg(14, &[int(4, 1), int(4, 2), packed])])],
    );
    assert_eq!(
        v["spec"]["securityContext"]["supplementalGroups"],
        json!([1, 2, 3, 4])
    );
}

#[test]
fn managed_fields_carry_their_fields_v1_json() {
    let fields_v1 = msg(7, &[bytes(1, br#"{"f:data":{}}"#)]);
    let v = decoded(
        "v1",
        "ConfigMap",
        &[msg(
            1,
            &[msg(
                17,
                &[string(1, "kubectl"), string(6, "FieldsV1"), fields_v1],
            )],
        )],
    );
    assert_eq!(
        v["metadata"]["managedFields"],
        json!([{"manager": "kubectl", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {}}}])
    );
}

#[test]
fn delete_options_decode_under_any_group_version_and_inside_an_eviction() {
    // DeleteOptions{gracePeriodSeconds 0, propagationPolicy "Foreground", dryRun ["All"]}
    let opts = [int(1, 0), string(4, "Foreground"), string(5, "All")];
    let v = decoded("apps/v1", "DeleteOptions", &opts);
    assert_eq!(
        v,
        json!({"apiVersion": "apps/v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "propagationPolicy": "Foreground", "dryRun": ["All"]})
    );
    let eviction = decoded(
        "policy/v1",
        "Eviction",
        &[msg(1, &[string(1, "p")]), msg(2, &opts[..1])],
    );
    assert_eq!(eviction["deleteOptions"], json!({"gracePeriodSeconds": 0}));
}

#[test]
fn unknown_fields_are_skipped_as_go_does() {
    let v = decoded("v1", "ConfigMap", &[int(99, 7), entry(2, "a", "b")]);
    assert_eq!(
        v,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}})
    );
}

#[test]
fn malformed_bodies_are_errors_not_panics() {
    assert_eq!(
        decode(b"{\"kind\":\"Pod\"}"),
        Err(ProtobufError::MissingMagic)
    );
    let mut truncated = body("v1", "ConfigMap", &[entry(2, "a", "b")]);
    truncated.pop();
    assert_eq!(decode(&truncated), Err(ProtobufError::Truncated));
    // metadata sent as a varint instead of a message
    assert!(matches!(
        decode(&body("v1", "Pod", &[int(1, 5)])),
        Err(ProtobufError::WireTypeMismatch {
            message: "Pod",
            field: "metadata",
            ..
        })
    ));
    assert!(matches!(
        decode(&body(
            "v1",
            "ConfigMap",
            &[msg(1, &[bytes(1, &[0xff, 0xfe])])]
        )),
        Err(ProtobufError::InvalidUtf8 { field: "name", .. })
    ));
    let bad_time = body("v1", "Pod", &[msg(1, &[msg(8, &[int(1, i64::MAX)])])]);
    assert!(matches!(
        decode(&bad_time),
        Err(ProtobufError::InvalidTimestamp { .. })
    ));
    let bad_fields = body(
        "v1",
        "Pod",
        &[msg(1, &[msg(17, &[msg(7, &[bytes(1, b"{nope")])])])],
    );
    assert!(matches!(
        decode(&bad_fields),
        Err(ProtobufError::InvalidEmbeddedJson { .. })
    ));
}

#[test]
fn nesting_deeper_than_any_kubernetes_type_is_refused() {
    // The schema has no recursive types, but an embedded RawExtension object
    // re-enters the decoder; the depth counter bounds that recursion.
    let namespace = super::schema::root("v1", "Namespace").expect("in the schema");
    assert!(super::message(&[], namespace, super::MAX_DEPTH).is_ok());
    assert_eq!(
        super::message(&[], namespace, super::MAX_DEPTH + 1),
        Err(ProtobufError::TooDeep(super::MAX_DEPTH))
    );
}

#[test]
fn kinds_outside_the_schema_and_content_encodings_are_refused() {
    assert_eq!(
        decode(&body("example.com/v1", "Widget", &[])),
        Err(ProtobufError::UnsupportedKind {
            api_version: "example.com/v1".into(),
            kind: "Widget".into()
        })
    );
    let mut gz = body("v1", "ConfigMap", &[]);
    gz.extend(string(3, "gzip"));
    assert_eq!(
        decode(&gz),
        Err(ProtobufError::UnsupportedContentEncoding("gzip".into()))
    );
}

#[test]
fn durations_print_like_go() {
    let s = 1_000_000_000;
    assert_eq!(go_duration(0), "0s");
    assert_eq!(go_duration(3600 * s), "1h0m0s");
    assert_eq!(go_duration(90 * s), "1m30s");
    assert_eq!(go_duration(1_500_000_000), "1.5s");
    assert_eq!(go_duration(100_000_000), "100ms");
    assert_eq!(go_duration(1_500), "1.5µs");
    assert_eq!(go_duration(7), "7ns");
    assert_eq!(go_duration(-90 * s), "-1m30s");
}
