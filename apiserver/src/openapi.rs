//! OpenAPI v3 documents: the `/openapi/v3` index and one document per served
//! group-version (`/openapi/v3/api/v1`, `/openapi/v3/apis/{group}/{version}`).
//!
//! Schemas are not written by hand: they come from `k8s-openapi`'s `schemars`
//! feature, which generates each type's schema from the Kubernetes OpenAPI
//! spec under its Kubernetes name (`io.k8s.api.apps.v1.Deployment`). This
//! module collects the schemas a group-version needs, adds what Kubernetes'
//! own documents carry around them (`x-kubernetes-group-version-kind`, the
//! `…List` kinds), and describes every path from the [`Registry`].
//!
//! What kubectl reads here:
//! - `kubectl apply`/`create`/`replace` (default `--validate=strict`) look for
//!   a PATCH operation of the object's kind (its `x-kubernetes-group-version-kind`)
//!   whose own `parameters` hold an inline `{"name": "fieldValidation", "in":
//!   "query"}`. Found: kubectl sends `fieldValidation=Strict` and leaves
//!   validation to the server. Not found: it validates client-side.
//! - `kubectl apply` (client-side) computes its strategic merge patch from
//!   these schemas when the PATCH operation accepts
//!   `application/strategic-merge-patch+json`. `k8s-openapi` schemas do not
//!   carry `x-kubernetes-patch-strategy`/`-merge-key`, so a patch computed from
//!   them would replace lists the server merges by key. We therefore do not
//!   advertise that content type, and kubectl computes the patch from its
//!   compiled-in types, which know every merge key of the built-in kinds.
//! - `kubectl explain` walks `components.schemas` from the schema whose
//!   `x-kubernetes-group-version-kind` names the resource.
//!
//! Documents are built on first request and cached in [`OpenApiCache`];
//! nothing is generated at startup.

use std::sync::{Arc, OnceLock};

use k8s_openapi::schemars::generate::{SchemaGenerator, SchemaSettings};
use k8s_openapi::schemars::JsonSchema;
use k8s_openapi::Resource;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha512};

use crate::discovery::{subresources_of, GIT_VERSION};
use crate::registry::{Registry, ResourceDef};

/// `Content-Type` of OpenAPI v3 documents and of the index.
pub const CONTENT_TYPE_OPENAPI_V3: &str = "application/json";

const SCHEMA_PREFIX: &str = "#/components/schemas/";

// ---------------------------------------------------------------------------
// Rust types behind each kind

/// A kind whose schema `k8s-openapi` provides.
struct TypedKind {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    /// Adds the kind's schema (and all it references) to a generator and
    /// returns its name in `components.schemas`.
    add: fn(&mut SchemaGenerator) -> String,
}

fn add_schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> String {
    generator.subschema_for::<T>();
    T::schema_name().into_owned()
}

const fn typed<T: Resource + JsonSchema>() -> TypedKind {
    TypedKind {
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        add: add_schema::<T>,
    }
}

/// Every kind we can describe: the registry's kinds, the kinds their
/// subresources speak (`Scale`, `Binding`, `Eviction`), and the common
/// built-in kinds, so that adding a registry entry for one of them needs no
/// change here.
const TYPED_KINDS: &[TypedKind] = {
    use k8s_openapi::api::{
        admissionregistration::v1 as admission, apps::v1 as apps,
        authentication::v1 as authentication, autoscaling::v1 as autoscaling1,
        autoscaling::v2 as autoscaling2, batch::v1 as batch, certificates::v1 as certificates,
        coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery,
        events::v1 as events, networking::v1 as networking, node::v1 as node, policy::v1 as policy,
        rbac::v1 as rbac, scheduling::v1 as scheduling, storage::v1 as storage,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
    &[
        typed::<core::Binding>(),
        typed::<core::ComponentStatus>(),
        typed::<core::ConfigMap>(),
        typed::<core::Endpoints>(),
        typed::<core::Event>(),
        typed::<core::LimitRange>(),
        typed::<core::Namespace>(),
        typed::<core::Node>(),
        typed::<core::PersistentVolume>(),
        typed::<core::PersistentVolumeClaim>(),
        typed::<core::Pod>(),
        typed::<core::PodTemplate>(),
        typed::<core::ReplicationController>(),
        typed::<core::ResourceQuota>(),
        typed::<core::Secret>(),
        typed::<core::Service>(),
        typed::<core::ServiceAccount>(),
        typed::<apps::ControllerRevision>(),
        typed::<apps::DaemonSet>(),
        typed::<apps::Deployment>(),
        typed::<apps::ReplicaSet>(),
        typed::<apps::StatefulSet>(),
        typed::<authentication::TokenRequest>(),
        typed::<autoscaling1::HorizontalPodAutoscaler>(),
        typed::<autoscaling1::Scale>(),
        typed::<autoscaling2::HorizontalPodAutoscaler>(),
        typed::<batch::CronJob>(),
        typed::<batch::Job>(),
        typed::<certificates::CertificateSigningRequest>(),
        typed::<coordination::Lease>(),
        typed::<discovery::EndpointSlice>(),
        typed::<events::Event>(),
        typed::<networking::Ingress>(),
        typed::<networking::IngressClass>(),
        typed::<networking::NetworkPolicy>(),
        typed::<node::RuntimeClass>(),
        typed::<policy::Eviction>(),
        typed::<policy::PodDisruptionBudget>(),
        typed::<rbac::ClusterRole>(),
        typed::<rbac::ClusterRoleBinding>(),
        typed::<rbac::Role>(),
        typed::<rbac::RoleBinding>(),
        typed::<scheduling::PriorityClass>(),
        typed::<storage::CSIDriver>(),
        typed::<storage::CSINode>(),
        typed::<storage::StorageClass>(),
        typed::<storage::VolumeAttachment>(),
        typed::<admission::MutatingWebhookConfiguration>(),
        typed::<admission::ValidatingWebhookConfiguration>(),
        typed::<apiextensions::CustomResourceDefinition>(),
    ]
};

fn typed_kind(group: &str, version: &str, kind: &str) -> Option<&'static TypedKind> {
    TYPED_KINDS
        .iter()
        .find(|t| t.group == group && t.version == version && t.kind == kind)
}

/// Whether an OpenAPI schema exists for a kind; a registry kind without one
/// is served without paths or schema in its document.
pub fn has_schema(group: &str, version: &str, kind: &str) -> bool {
    typed_kind(group, version, kind).is_some()
}

// ---------------------------------------------------------------------------
// Names

/// `apps` → `AppsV1`, `rbac.authorization.k8s.io` → `RbacAuthorizationV1`,
/// core → `CoreV1`: the infix of Kubernetes operation ids.
fn group_version_camel(group: &str, version: &str) -> String {
    let group = if group.is_empty() { "core" } else { group };
    let group = group.strip_suffix(".k8s.io").unwrap_or(group);
    let mut out: String = group.split('.').map(capitalize).collect();
    out.push_str(&capitalize(version));
    out
}

/// `apps` → `apps_v1`, `rbac.authorization.k8s.io` → `rbacAuthorization_v1`.
fn tag(group: &str, version: &str) -> String {
    let camel = group_version_camel(group, version);
    let gv_suffix = capitalize(version);
    let group_part = camel.strip_suffix(&gv_suffix).unwrap_or(&camel);
    let mut chars = group_part.chars();
    let lower: String = chars
        .next()
        .map(|c| c.to_ascii_lowercase())
        .into_iter()
        .chain(chars)
        .collect();
    format!("{lower}_{version}")
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

fn url_prefix(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    }
}

/// The key of a group-version in the `/openapi/v3` index: `api/v1`, `apis/apps/v1`.
pub fn index_key(group: &str, version: &str) -> String {
    url_prefix(group, version)
        .trim_start_matches('/')
        .to_string()
}

/// The URL clients fetch a group-version document from.
pub fn server_relative_url(group: &str, version: &str, hash: &str) -> String {
    format!("/openapi/v3/{}?hash={hash}", index_key(group, version))
}

/// The document's hash as Kubernetes computes it (upper-case hex SHA-512 of
/// the bytes served). It is also the document's `ETag`.
pub fn document_hash(bytes: &[u8]) -> String {
    Sha512::digest(bytes)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

// ---------------------------------------------------------------------------
// Schemas

fn gvk_object(group: &str, version: &str, kind: &str) -> Value {
    json!({ "group": group, "kind": kind, "version": version })
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("{SCHEMA_PREFIX}{name}") })
}

/// Kubernetes does not require `metadata`; `k8s-openapi` does because the
/// Rust field is not optional. Drop it so `kubectl explain` and client-side
/// validation match Kubernetes.
fn drop_required_metadata(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if let Some(Value::Array(required)) = obj.get_mut("required") {
        required.retain(|r| r != "metadata");
        if required.is_empty() {
            obj.remove("required");
        }
    }
}

fn tag_kind(schemas: &mut Map<String, Value>, name: &str, group: &str, version: &str, kind: &str) {
    if let Some(Value::Object(schema)) = schemas.get_mut(name) {
        schema.insert(
            "x-kubernetes-group-version-kind".into(),
            json!([gvk_object(group, version, kind)]),
        );
    }
    if let Some(schema) = schemas.get_mut(name) {
        drop_required_metadata(schema);
    }
}

/// `io.k8s.api.apps.v1.DeploymentList`, built around the item schema the way
/// Kubernetes defines every list kind.
fn list_schema(item_name: &str, group: &str, version: &str, kind: &str) -> Value {
    json!({
        "description": format!("{kind}List is a list of {kind} objects."),
        "type": "object",
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation of an object.",
                "type": "string",
            },
            "items": {
                "description": format!("List of {kind} objects."),
                "type": "array",
                "items": schema_ref(item_name),
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource this object represents.",
                "type": "string",
            },
            "metadata": {
                "description": "Standard list metadata.",
                "allOf": [schema_ref("io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta")],
            },
        },
        "required": ["items"],
        "x-kubernetes-group-version-kind": [gvk_object(group, version, &format!("{kind}List"))],
    })
}

// ---------------------------------------------------------------------------
// Operations

fn string_param(name: &str, location: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": location,
        "description": description,
        "schema": { "type": "string", "uniqueItems": true },
    })
}

fn typed_query_param(name: &str, ty: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": "query",
        "description": description,
        "schema": { "type": ty, "uniqueItems": true },
    })
}

fn path_param(name: &str, description: &str) -> Value {
    let mut p = string_param(name, "path", description);
    if let Value::Object(obj) = &mut p {
        obj.insert("required".into(), true.into());
    }
    p
}

fn pretty_param() -> Value {
    string_param(
        "pretty",
        "query",
        "If 'true', then the output is pretty printed.",
    )
}

fn dry_run_param() -> Value {
    string_param(
        "dryRun",
        "query",
        "When present, indicates that modifications should not be persisted. Valid values: All.",
    )
}

fn field_manager_param() -> Value {
    string_param(
        "fieldManager",
        "query",
        "fieldManager is a name associated with the actor or entity that is making these changes.",
    )
}

/// The parameter kubectl looks for to decide that the server validates fields.
fn field_validation_param() -> Value {
    string_param(
        "fieldValidation",
        "query",
        "fieldValidation instructs the server on how to handle objects in the request containing \
         unknown or duplicate fields. Valid values are: Ignore (drop them silently), Warn (drop \
         them and send a warning header for each) and Strict (fail the request with BadRequest \
         listing them). Strict is the default from kubectl.",
    )
}

fn write_params() -> Vec<Value> {
    vec![
        dry_run_param(),
        field_manager_param(),
        field_validation_param(),
    ]
}

fn patch_params() -> Vec<Value> {
    let mut params = write_params();
    params.push(typed_query_param(
        "force",
        "boolean",
        "Force is going to \"force\" Apply requests: it re-acquires conflicting fields owned by other managers. Must be unset for non-apply patch requests.",
    ));
    params
}

fn list_params() -> Vec<Value> {
    vec![
        typed_query_param("allowWatchBookmarks", "boolean", "Requests watch events of type BOOKMARK."),
        string_param("continue", "query", "The continue token of a previous paginated list call."),
        string_param("fieldSelector", "query", "A selector to restrict the returned objects by their fields."),
        string_param("labelSelector", "query", "A selector to restrict the returned objects by their labels."),
        typed_query_param("limit", "integer", "The maximum number of objects to return in one list call."),
        string_param("resourceVersion", "query", "Sets a constraint on what resource versions a request may be served from."),
        string_param("resourceVersionMatch", "query", "Determines how resourceVersion is applied to list calls."),
        typed_query_param("sendInitialEvents", "boolean", "With watch=true, start the watch stream with synthetic ADDED events of all objects."),
        typed_query_param("timeoutSeconds", "integer", "Timeout for the list/watch call."),
        typed_query_param("watch", "boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications."),
    ]
}

fn delete_params() -> Vec<Value> {
    vec![
        dry_run_param(),
        typed_query_param("gracePeriodSeconds", "integer", "The duration in seconds before the object should be deleted."),
        typed_query_param("orphanDependents", "boolean", "Deprecated: use propagationPolicy."),
        string_param("propagationPolicy", "query", "Whether and how garbage collection will be performed: Orphan, Background or Foreground."),
    ]
}

const JSON: &str = "application/json";

fn json_content(schema: Value) -> Value {
    json!({ JSON: { "schema": schema } })
}

/// One response code; `schema` `None` for a body-less answer.
fn response(description: &str, schema: Option<Value>) -> Value {
    match schema {
        Some(schema) => json!({ "description": description, "content": json_content(schema) }),
        None => json!({ "description": description }),
    }
}

/// The request body of a patch: every patch type skiff accepts except
/// strategic merge patch (see the module docs for why it is not advertised).
fn patch_body() -> Value {
    let patch = schema_ref("io.k8s.apimachinery.pkg.apis.meta.v1.Patch");
    let mut content = Map::new();
    for media in [
        "application/apply-patch+yaml",
        "application/json-patch+json",
        "application/merge-patch+json",
    ] {
        content.insert(media.into(), json!({ "schema": patch.clone() }));
    }
    json!({ "content": content, "required": true })
}

fn object_body(schema: Value) -> Value {
    json!({ "content": { "*/*": { "schema": schema } }, "required": true })
}

/// Everything an operation object needs; [`Op::build`] renders it.
struct Op<'a> {
    action: &'static str,
    verb: &'static str,
    description: String,
    /// `list`, `create`, ... then `{GroupVersion}`, then `suffix` (`NamespacedPod`).
    suffix: String,
    gv_camel: &'a str,
    tag: &'a str,
    gvk: Value,
    params: Vec<Value>,
    body: Option<Value>,
    responses: Vec<(&'static str, Value)>,
}

impl Op<'_> {
    fn build(self) -> Value {
        let mut op = Map::new();
        op.insert("description".into(), self.description.into());
        op.insert(
            "operationId".into(),
            format!("{}{}{}", self.verb, self.gv_camel, self.suffix).into(),
        );
        if !self.params.is_empty() {
            op.insert("parameters".into(), Value::Array(self.params));
        }
        if let Some(body) = self.body {
            op.insert("requestBody".into(), body);
        }
        let mut responses = Map::new();
        for (code, r) in self.responses {
            responses.insert(code.into(), r);
        }
        responses.insert("401".into(), response("Unauthorized", None));
        op.insert("responses".into(), Value::Object(responses));
        op.insert("tags".into(), json!([self.tag]));
        op.insert("x-kubernetes-action".into(), self.action.into());
        op.insert("x-kubernetes-group-version-kind".into(), self.gvk);
        Value::Object(op)
    }
}

/// Adds every path of one resource to `paths`. `schema_of` maps a kind's
/// `(group, version, kind)` to its schema name, when there is one.
fn resource_paths(
    def: &ResourceDef,
    object_schema: &str,
    schema_of: &dyn Fn(&str, &str, &str) -> Option<String>,
    paths: &mut Map<String, Value>,
) {
    let gv_camel = group_version_camel(def.group, def.version);
    let tag = tag(def.group, def.version);
    let prefix = url_prefix(def.group, def.version);
    let kind = def.kind;
    let gvk = gvk_object(def.group, def.version, kind);
    let object = schema_ref(object_schema);
    let list = schema_ref(&format!("{object_schema}List"));
    let status = schema_ref("io.k8s.apimachinery.pkg.apis.meta.v1.Status");
    let delete_options = schema_ref("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions");
    let scoped = if def.namespaced { "Namespaced" } else { "" };
    let op = |action, verb, description: String, suffix: String| Op {
        action,
        verb,
        description,
        suffix,
        gv_camel: &gv_camel,
        tag: &tag,
        gvk: gvk.clone(),
        params: Vec::new(),
        body: None,
        responses: Vec::new(),
    };

    let (collection, namespace_param) = if def.namespaced {
        (
            format!("{prefix}/namespaces/{{namespace}}/{}", def.plural),
            Some(path_param(
                "namespace",
                "object name and auth scope, such as for teams and projects",
            )),
        )
    } else {
        (format!("{prefix}/{}", def.plural), None)
    };
    let common = |extra: Option<Value>| -> Value {
        let mut params: Vec<Value> = extra.into_iter().collect();
        params.extend(namespace_param.clone());
        params.push(pretty_param());
        Value::Array(params)
    };

    if def.namespaced {
        let mut all = op(
            "list",
            "list",
            format!("list or watch objects of kind {kind}"),
            format!("{kind}ForAllNamespaces"),
        );
        all.params = list_params();
        all.responses = vec![("200", response("OK", Some(list.clone())))];
        paths.insert(
            format!("{prefix}/{}", def.plural),
            json!({ "get": all.build(), "parameters": [pretty_param()] }),
        );
    }

    // The collection.
    let mut list_op = op(
        "list",
        "list",
        format!("list or watch objects of kind {kind}"),
        format!("{scoped}{kind}"),
    );
    list_op.params = list_params();
    list_op.responses = vec![("200", response("OK", Some(list)))];
    let mut create = op(
        "post",
        "create",
        format!("create a {kind}"),
        format!("{scoped}{kind}"),
    );
    create.params = write_params();
    create.body = Some(object_body(object.clone()));
    create.responses = vec![
        ("200", response("OK", Some(object.clone()))),
        ("201", response("Created", Some(object.clone()))),
        ("202", response("Accepted", Some(object.clone()))),
    ];
    let mut delete_collection = op(
        "deletecollection",
        "delete",
        format!("delete collection of {kind}"),
        format!("Collection{scoped}{kind}"),
    );
    delete_collection.params = delete_params();
    delete_collection.params.extend(list_params());
    delete_collection.body = Some(object_body(delete_options.clone()));
    delete_collection.responses = vec![("200", response("OK", Some(status.clone())))];
    paths.insert(
        collection.clone(),
        json!({
            "get": list_op.build(),
            "post": create.build(),
            "delete": delete_collection.build(),
            "parameters": common(None),
        }),
    );

    // One object.
    let name_param = || path_param("name", &format!("name of the {kind}"));
    let mut read = op(
        "get",
        "read",
        format!("read the specified {kind}"),
        format!("{scoped}{kind}"),
    );
    read.responses = vec![("200", response("OK", Some(object.clone())))];
    let mut replace = op(
        "put",
        "replace",
        format!("replace the specified {kind}"),
        format!("{scoped}{kind}"),
    );
    replace.params = write_params();
    replace.body = Some(object_body(object.clone()));
    replace.responses = vec![
        ("200", response("OK", Some(object.clone()))),
        ("201", response("Created", Some(object.clone()))),
    ];
    let mut patch = op(
        "patch",
        "patch",
        format!("partially update the specified {kind}"),
        format!("{scoped}{kind}"),
    );
    patch.params = patch_params();
    patch.body = Some(patch_body());
    patch.responses = vec![
        ("200", response("OK", Some(object.clone()))),
        ("201", response("Created", Some(object.clone()))),
    ];
    let mut delete = op(
        "delete",
        "delete",
        format!("delete a {kind}"),
        format!("{scoped}{kind}"),
    );
    delete.params = delete_params();
    delete.body = Some(object_body(delete_options));
    delete.responses = vec![
        ("200", response("OK", Some(object.clone()))),
        ("202", response("Accepted", Some(object.clone()))),
    ];
    paths.insert(
        format!("{collection}/{{name}}"),
        json!({
            "get": read.build(),
            "put": replace.build(),
            "patch": patch.build(),
            "delete": delete.build(),
            "parameters": common(Some(name_param())),
        }),
    );

    // Subresources.
    for sub in subresources_of(def) {
        let sub_camel = capitalize(sub.name);
        let suffix = format!("{scoped}{kind}{sub_camel}");
        let sub_gvk = gvk_object(sub.group, sub.version, sub.kind);
        let sub_schema = schema_of(sub.group, sub.version, sub.kind).map(|n| schema_ref(&n));
        let body_schema = sub_schema
            .clone()
            .unwrap_or_else(|| json!({ "type": "object" }));
        let answer = sub_schema
            .clone()
            .unwrap_or_else(|| json!({ "type": "string" }));
        let mut item = Map::new();
        for verb in sub.verbs {
            let (method, mut o) = match *verb {
                "get" => (
                    "get",
                    op(
                        "get",
                        "read",
                        format!("read {} of the specified {kind}", sub.name),
                        suffix.clone(),
                    ),
                ),
                "update" => (
                    "put",
                    op(
                        "put",
                        "replace",
                        format!("replace {} of the specified {kind}", sub.name),
                        suffix.clone(),
                    ),
                ),
                "patch" => (
                    "patch",
                    op(
                        "patch",
                        "patch",
                        format!("partially update {} of the specified {kind}", sub.name),
                        suffix.clone(),
                    ),
                ),
                "create" => (
                    "post",
                    op(
                        "post",
                        "create",
                        format!("create {} of a {kind}", sub.name),
                        suffix.clone(),
                    ),
                ),
                _ => continue,
            };
            o.gvk = sub_gvk.clone();
            o.responses = vec![("200", response("OK", Some(answer.clone())))];
            match method {
                "put" => {
                    o.params = write_params();
                    o.body = Some(object_body(body_schema.clone()));
                    o.responses
                        .push(("201", response("Created", Some(answer.clone()))));
                }
                "patch" => {
                    o.params = patch_params();
                    o.body = Some(patch_body());
                    o.responses
                        .push(("201", response("Created", Some(answer.clone()))));
                }
                "post" => {
                    o.params = write_params();
                    o.body = Some(object_body(body_schema.clone()));
                    o.responses
                        .push(("201", response("Created", Some(answer.clone()))));
                    o.responses
                        .push(("202", response("Accepted", Some(answer.clone()))));
                }
                _ => {}
            }
            item.insert(method.into(), o.build());
        }
        let name_param = path_param("name", &format!("name of the {}", sub.kind));
        item.insert("parameters".into(), common(Some(name_param)));
        paths.insert(
            format!("{collection}/{{name}}/{}", sub.name),
            Value::Object(item),
        );
    }
}

// ---------------------------------------------------------------------------
// Documents

/// The OpenAPI v3 document of one group-version, or `None` when it is not
/// served. Built from scratch on each call: use [`OpenApiCache`] to serve it.
pub fn openapi_v3_group_version(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let defs: Vec<&ResourceDef> = reg
        .all()
        .iter()
        .filter(|d| d.group == group && d.version == version)
        .collect();
    if defs.is_empty() {
        return None;
    }

    let mut generator = SchemaSettings::openapi3().into_generator();
    {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
        add_schema::<meta::Status>(&mut generator);
        add_schema::<meta::DeleteOptions>(&mut generator);
        add_schema::<meta::Patch>(&mut generator);
        add_schema::<meta::ListMeta>(&mut generator);
        add_schema::<meta::WatchEvent<k8s_openapi::api::core::v1::ConfigMap>>(&mut generator);
    }

    // (schema name, group, version, kind) of every kind in the document.
    let mut kinds: Vec<(String, &'static TypedKind)> = Vec::new();
    let mut add_kind = |generator: &mut SchemaGenerator, g: &str, v: &str, k: &str| {
        let typed = typed_kind(g, v, k)?;
        let name = (typed.add)(generator);
        if !kinds.iter().any(|(n, _)| *n == name) {
            kinds.push((name.clone(), typed));
        }
        Some(name)
    };
    let mut resources: Vec<(&ResourceDef, String)> = Vec::new();
    for def in &defs {
        let Some(name) = add_kind(&mut generator, def.group, def.version, def.kind) else {
            continue;
        };
        for sub in subresources_of(def) {
            add_kind(&mut generator, sub.group, sub.version, sub.kind);
        }
        resources.push((def, name));
    }

    let mut schemas = generator.take_definitions(true);
    for (name, typed) in &kinds {
        tag_kind(&mut schemas, name, typed.group, typed.version, typed.kind);
    }
    for (def, name) in &resources {
        schemas.insert(
            format!("{name}List"),
            list_schema(name, def.group, def.version, def.kind),
        );
    }
    // Stable output, so that the hash only changes when content does.
    schemas.sort_keys();

    let schema_of = |g: &str, v: &str, k: &str| -> Option<String> {
        kinds
            .iter()
            .find(|(_, t)| t.group == g && t.version == v && t.kind == k)
            .map(|(n, _)| n.clone())
    };
    let mut paths = Map::new();
    for (def, name) in &resources {
        resource_paths(def, name, &schema_of, &mut paths);
    }

    Some(json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": GIT_VERSION },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "BearerToken": {
                    "type": "apiKey",
                    "description": "Bearer Token authentication",
                    "name": "authorization",
                    "in": "header",
                },
            },
        },
        "security": [{ "BearerToken": [] }],
    }))
}

fn to_bytes(doc: &Value) -> Vec<u8> {
    doc.to_string().into_bytes()
}

fn index_from(entries: impl Iterator<Item = (String, String)>) -> Value {
    let mut paths = Map::new();
    for (key, url) in entries {
        paths.insert(key, json!({ "serverRelativeURL": url }));
    }
    json!({ "paths": paths })
}

/// The `/openapi/v3` index: every served group-version and the URL of its
/// document, carrying the document's hash. Builds every document: use
/// [`OpenApiCache::index`] to serve it.
pub fn openapi_v3_index(reg: &Registry) -> Value {
    index_from(reg.group_versions().into_iter().filter_map(|(g, v)| {
        let doc = openapi_v3_group_version(reg, g, v)?;
        let hash = document_hash(&to_bytes(&doc));
        Some((index_key(g, v), server_relative_url(g, v, &hash)))
    }))
}

/// A rendered document and its hash.
#[derive(Debug)]
struct Rendered {
    bytes: Arc<Vec<u8>>,
    hash: String,
}

/// Serves OpenAPI v3 documents, each rendered once on first request.
///
/// Handlers: `GET /openapi/v3` → [`OpenApiCache::index`];
/// `GET /openapi/v3/api/v1` and `/openapi/v3/apis/{group}/{version}` →
/// [`OpenApiCache::get`], with `ETag: "<hash>"`; when the `hash` query
/// parameter equals [`OpenApiCache::hash`] answer with
/// `Cache-Control: public, immutable`, when it differs redirect (301) to
/// [`server_relative_url`] with the current hash, as Kubernetes does.
#[derive(Debug)]
pub struct OpenApiCache {
    registry: Registry,
    documents: Vec<(&'static str, &'static str, OnceLock<Option<Rendered>>)>,
    index: OnceLock<Arc<Vec<u8>>>,
}

impl OpenApiCache {
    pub fn new(registry: Registry) -> Self {
        let documents = registry
            .group_versions()
            .into_iter()
            .map(|(g, v)| (g, v, OnceLock::new()))
            .collect();
        Self {
            registry,
            documents,
            index: OnceLock::new(),
        }
    }

    fn rendered(&self, group: &str, version: &str) -> Option<&Rendered> {
        let (g, v, cell) = self
            .documents
            .iter()
            .find(|(g, v, _)| *g == group && *v == version)?;
        cell.get_or_init(|| {
            let doc = openapi_v3_group_version(&self.registry, g, v)?;
            let bytes = to_bytes(&doc);
            let hash = document_hash(&bytes);
            Some(Rendered {
                bytes: Arc::new(bytes),
                hash,
            })
        })
        .as_ref()
    }

    /// The JSON bytes of a group-version's document, `None` if not served.
    pub fn get(&self, group: &str, version: &str) -> Option<Arc<Vec<u8>>> {
        self.rendered(group, version).map(|r| Arc::clone(&r.bytes))
    }

    /// The hash (and `ETag`) of a group-version's document.
    pub fn hash(&self, group: &str, version: &str) -> Option<&str> {
        self.rendered(group, version).map(|r| r.hash.as_str())
    }

    /// The JSON bytes of the `/openapi/v3` index (renders every document once).
    pub fn index(&self) -> Arc<Vec<u8>> {
        Arc::clone(self.index.get_or_init(|| {
            let entries = self.documents.iter().filter_map(|(g, v, _)| {
                let hash = self.hash(g, v)?;
                Some((index_key(g, v), server_relative_url(g, v, hash)))
            });
            Arc::new(to_bytes(&index_from(entries)))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(group: &str, version: &str) -> Value {
        openapi_v3_group_version(&Registry::builtin(), group, version)
            .unwrap_or_else(|| panic!("no document for {group}/{version}"))
    }

    fn collect_refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(obj) => {
                for (k, v) in obj {
                    if k == "$ref" {
                        if let Some(r) = v.as_str() {
                            out.push(r.to_string());
                        }
                    } else {
                        collect_refs(v, out);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn index_lists_every_served_group_version_with_a_hashed_url() {
        let reg = Registry::builtin();
        let index = openapi_v3_index(&reg);
        let paths = index["paths"].as_object().cloned().unwrap_or_default();
        assert_eq!(paths.len(), reg.group_versions().len());
        for (g, v) in reg.group_versions() {
            let url = paths[&index_key(g, v)]["serverRelativeURL"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let prefix = format!("/openapi/v3/{}?hash=", index_key(g, v));
            assert!(url.starts_with(&prefix), "{url}");
            assert_eq!(url.len(), prefix.len() + 128, "sha512 hex: {url}");
        }
        assert!(paths.contains_key("api/v1"));
        assert!(paths.contains_key("apis/apps/v1"));
        assert!(paths.contains_key("apis/coordination.k8s.io/v1"));
    }

    #[test]
    fn apps_v1_describes_deployment_with_its_kind_and_a_patch_kubectl_trusts_to_validate() {
        let d = doc("apps", "v1");
        let deployment = &d["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
        );
        assert!(deployment["properties"]["spec"].is_object());
        // What kubectl's QueryParamVerifierV3 checks: a PATCH operation of the
        // kind, with an inline query parameter named fieldValidation.
        let patch = &d["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "apps", "kind": "Deployment", "version": "v1"})
        );
        assert_eq!(patch["x-kubernetes-action"], "patch");
        let params = patch["parameters"].as_array().cloned().unwrap_or_default();
        for name in ["fieldValidation", "dryRun", "fieldManager"] {
            assert!(
                params
                    .iter()
                    .any(|p| p["name"] == name && p["in"] == "query"),
                "{name} missing"
            );
        }
    }

    #[test]
    fn every_patch_operation_declares_field_validation_because_kubectl_checks_any_of_them() {
        let reg = Registry::builtin();
        for (g, v) in reg.group_versions() {
            let d = doc(g, v);
            for (path, item) in d["paths"].as_object().cloned().unwrap_or_default() {
                for method in ["patch", "put", "post"] {
                    if let Some(op) = item.get(method) {
                        let ok = op["parameters"]
                            .as_array()
                            .is_some_and(|ps| ps.iter().any(|p| p["name"] == "fieldValidation"));
                        assert!(ok, "{method} {path}");
                    }
                }
            }
        }
    }

    #[test]
    fn no_schema_reference_dangles_in_any_group_version() {
        let reg = Registry::builtin();
        for (g, v) in reg.group_versions() {
            let d = doc(g, v);
            let schemas = d["components"]["schemas"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let mut refs = Vec::new();
            collect_refs(&d, &mut refs);
            assert!(!refs.is_empty());
            for r in refs {
                let name = r
                    .strip_prefix(SCHEMA_PREFIX)
                    .unwrap_or_else(|| panic!("odd ref {r}"));
                assert!(schemas.contains_key(name), "{g}/{v}: dangling {r}");
            }
        }
    }

    #[test]
    fn every_registry_kind_has_a_schema_list_and_operations_tagged_with_its_kind() {
        let reg = Registry::builtin();
        for def in reg.all() {
            assert!(has_schema(def.group, def.version, def.kind), "{}", def.kind);
            let d = doc(def.group, def.version);
            let schemas = &d["components"]["schemas"];
            let gvk = json!({"group": def.group, "kind": def.kind, "version": def.version});
            let tagged = schemas
                .as_object()
                .into_iter()
                .flat_map(|m| m.values())
                .filter(|s| s["x-kubernetes-group-version-kind"] == json!([gvk.clone()]))
                .count();
            assert_eq!(tagged, 1, "{}", def.kind);
            let ops_of_kind = d["paths"]
                .as_object()
                .into_iter()
                .flat_map(|m| m.values())
                .flat_map(|item| ["get", "put", "post", "patch", "delete"].map(|m| item[m].clone()))
                .filter(|op| op["x-kubernetes-group-version-kind"] == gvk)
                .count();
            assert!(ops_of_kind >= 7, "{}: {ops_of_kind}", def.kind);
        }
    }

    #[test]
    fn core_v1_has_pod_schema_with_containers_and_meta_types() {
        let d = doc("", "v1");
        let schemas = &d["components"]["schemas"];
        assert!(schemas["io.k8s.api.core.v1.Container"]["properties"]["image"].is_object());
        assert!(schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"].is_object());
        assert!(schemas["io.k8s.api.core.v1.PodList"]["properties"]["items"].is_object());
        // Kubernetes does not require metadata; k8s-openapi's Rust types do.
        assert!(schemas["io.k8s.api.core.v1.Pod"].get("required").is_none());
        let eviction = &d["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/eviction"]["post"];
        assert_eq!(
            eviction["x-kubernetes-group-version-kind"],
            json!({"group": "policy", "kind": "Eviction", "version": "v1"})
        );
        assert!(schemas["io.k8s.api.policy.v1.Eviction"].is_object());
        let nodes = &d["paths"]["/api/v1/nodes/{name}"]["get"];
        assert_eq!(nodes["operationId"], "readCoreV1Node");
    }

    #[test]
    fn scale_subresource_speaks_autoscaling_v1_scale() {
        let d = doc("apps", "v1");
        let scale = &d["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
        assert_eq!(
            scale["put"]["x-kubernetes-group-version-kind"],
            json!({"group": "autoscaling", "kind": "Scale", "version": "v1"})
        );
        assert_eq!(
            scale["put"]["operationId"],
            "replaceAppsV1NamespacedDeploymentScale"
        );
        assert!(
            d["components"]["schemas"]["io.k8s.api.autoscaling.v1.Scale"]
                ["x-kubernetes-group-version-kind"]
                .is_array()
        );
    }

    #[test]
    fn patches_do_not_advertise_strategic_merge_so_kubectl_uses_its_builtin_merge_keys() {
        let d = doc("apps", "v1");
        let patch = &d["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        let content = patch["requestBody"]["content"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert!(content.contains_key("application/merge-patch+json"));
        assert!(!content.contains_key("application/strategic-merge-patch+json"));
    }

    #[test]
    fn operation_ids_and_tags_follow_kubernetes_naming() {
        assert_eq!(group_version_camel("", "v1"), "CoreV1");
        assert_eq!(
            group_version_camel("rbac.authorization.k8s.io", "v1"),
            "RbacAuthorizationV1"
        );
        assert_eq!(
            group_version_camel("coordination.k8s.io", "v1"),
            "CoordinationV1"
        );
        assert_eq!(
            tag("rbac.authorization.k8s.io", "v1"),
            "rbacAuthorization_v1"
        );
        assert_eq!(tag("", "v1"), "core_v1");
    }

    #[test]
    fn cache_serves_the_same_bytes_and_hash_as_the_index_announces() {
        let reg = Registry::builtin();
        let cache = OpenApiCache::new(reg.clone());
        let bytes = cache.get("apps", "v1").unwrap_or_default();
        let hash = cache.hash("apps", "v1").unwrap_or_default().to_string();
        assert_eq!(document_hash(&bytes), hash);
        let index: Value = serde_json::from_slice(&cache.index()).unwrap_or_default();
        assert_eq!(
            index["paths"]["apis/apps/v1"]["serverRelativeURL"],
            server_relative_url("apps", "v1", &hash)
        );
        assert_eq!(index, openapi_v3_index(&reg));
        assert!(cache.get("apps", "v2").is_none());
        assert!(Arc::ptr_eq(
            &bytes,
            &cache.get("apps", "v1").unwrap_or_default()
        ));
    }
}
