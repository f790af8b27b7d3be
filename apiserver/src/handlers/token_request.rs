//! `POST .../serviceaccounts/{name}/token`: an `authentication.k8s.io/v1`
//! TokenRequest answered with a signed, time- and audience-bound token
//! (see [`crate::serviceaccount`]), optionally bound to a Pod or Secret.

use axum::body::Bytes;
use axum::http::StatusCode;
use k8s_openapi::api::authentication::v1 as authn;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde_json::Value;

use super::read::read_object;
use super::{Ctx, JsonResponse};
use crate::error::{ApiError, ApiResult, Target};
use crate::objects::{self, decode_body};
use crate::serviceaccount::{ObjectRef, TokenSpec};

const GROUP: &str = "authentication.k8s.io";
const KIND: &str = "TokenRequest";
/// A TokenRequest's `spec.expirationSeconds` when it names none.
pub(crate) const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// The shortest lifetime a token may be asked for (10 minutes).
pub(crate) const MIN_EXPIRATION_SECONDS: i64 = 600;
/// The longest lifetime a token may be asked for (2^32 seconds).
pub(crate) const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

/// What a TokenRequest body asks for, before the server fills defaults.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Requested {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
    pub bound: Option<BoundRef>,
}

#[derive(Debug, Default, PartialEq)]
pub(crate) struct BoundRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
}

fn str_at(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap_or_default().to_string()
}

/// Reads a TokenRequest body (JSON; `null` lists as Go clients send them are empty).
pub(crate) fn parse(body: &Value) -> ApiResult<Requested> {
    let spec = &body["spec"];
    let audiences = match &spec["audiences"] {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .map(|a| a.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                ApiError::BadRequest("spec.audiences must be a list of strings".into())
            })?,
        _ => {
            return Err(ApiError::BadRequest(
                "spec.audiences must be a list of strings".into(),
            ))
        }
    };
    let expiration_seconds = match &spec["expirationSeconds"] {
        Value::Null => DEFAULT_EXPIRATION_SECONDS,
        v => v.as_i64().ok_or_else(|| {
            ApiError::BadRequest("spec.expirationSeconds must be an integer".into())
        })?,
    };
    let bound = spec
        .get("boundObjectRef")
        .filter(|r| r.is_object())
        .map(|r| BoundRef {
            api_version: str_at(r, "apiVersion"),
            kind: str_at(r, "kind"),
            name: str_at(r, "name"),
            uid: str_at(r, "uid"),
        });
    let non_empty = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_string);
    Ok(Requested {
        name: non_empty(objects::name(body)),
        namespace: non_empty(objects::namespace(body)),
        audiences,
        expiration_seconds,
        bound,
    })
}

/// Static validation, as upstream's `ValidateTokenRequest`.
pub(crate) fn validate(req: &Requested) -> ApiResult<()> {
    let invalid = |message: String| {
        ApiError::invalid_field(GROUP, KIND, "", "spec.expirationSeconds", &message)
    };
    let secs = req.expiration_seconds;
    if secs < MIN_EXPIRATION_SECONDS {
        return Err(invalid(format!(
            "Invalid value: {secs}: may not specify a duration less than 10 minutes"
        )));
    }
    if secs > MAX_EXPIRATION_SECONDS {
        return Err(invalid(format!(
            "Invalid value: {secs}: may not specify a duration larger than 2^32 seconds"
        )));
    }
    Ok(())
}

/// Reads a namespaced core object by plural and name, 404 when it is missing.
async fn read_core(ctx: &Ctx, plural: &str, namespace: &str, name: &str) -> ApiResult<Value> {
    let target = Target::new("", plural, name);
    let key = format!("/registry/core/{plural}/{namespace}/{name}");
    let kv = ctx
        .state
        .store
        .get(&key)
        .await
        .map_err(|e| ApiError::from_store(e, &target))?
        .ok_or_else(|| ApiError::NotFound(target.clone()))?;
    crate::watchcache::decode_object(&kv.value, kv.mod_revision)
        .map_err(|e| ApiError::from_store(e, &target))
}

fn uid_of(obj: &Value) -> String {
    objects::meta_str(obj, "uid")
        .unwrap_or_default()
        .to_string()
}

pub(crate) async fn create(ctx: &Ctx, name: &str, body: &Bytes) -> ApiResult<JsonResponse> {
    let namespace = ctx.info.namespace.clone().unwrap_or_default();
    let req = parse(&decode_body(ctx.content_type(), body)?)?;
    if req.name.as_deref().is_some_and(|n| n != name) {
        return Err(ApiError::invalid_field(
            GROUP,
            KIND,
            name,
            "metadata.name",
            "must match the service account name if specified",
        ));
    }
    if req.namespace.as_deref().is_some_and(|n| n != namespace) {
        return Err(ApiError::invalid_field(
            GROUP,
            KIND,
            name,
            "metadata.namespace",
            "must match the service account namespace if specified",
        ));
    }
    let (_, sa) = read_object(ctx, name).await?;
    validate(&req)?;
    let mut pod = None;
    let mut secret = None;
    if let Some(r) = &req.bound {
        let group = r.api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let uid = match (group, r.kind.as_str()) {
            ("", "Pod") => {
                let p = read_core(ctx, "pods", &namespace, &r.name).await?;
                let sa_name = p["spec"]["serviceAccountName"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .unwrap_or("default");
                if sa_name != name {
                    return Err(ApiError::BadRequest(format!(
                        "cannot bind token for serviceaccount {name:?} to pod running with different serviceaccount name."
                    )));
                }
                let uid = uid_of(&p);
                pod = Some(ObjectRef {
                    name: r.name.clone(),
                    uid: uid.clone(),
                });
                uid
            }
            ("", "Secret") => {
                let s = read_core(ctx, "secrets", &namespace, &r.name).await?;
                let uid = uid_of(&s);
                secret = Some(ObjectRef {
                    name: r.name.clone(),
                    uid: uid.clone(),
                });
                uid
            }
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "cannot bind token for serviceaccount {name:?} to object of type {}, Kind={}",
                    if r.api_version.is_empty() {
                        "/"
                    } else {
                        &r.api_version
                    },
                    r.kind
                )))
            }
        };
        if !r.uid.is_empty() && r.uid != uid {
            return Err(ApiError::Conflict {
                target: Target::new("", &r.kind, &r.name),
                message: format!(
                    "the UID in the bound object reference ({}) does not match the UID in record. The object might have been deleted and then recreated",
                    r.uid
                ),
            });
        }
    }
    let tokens = &ctx.state.service_account_tokens;
    let audiences = if req.audiences.is_empty() {
        tokens.api_audiences().to_vec()
    } else {
        req.audiences.clone()
    };
    let spec = TokenSpec {
        namespace: namespace.clone(),
        serviceaccount: ObjectRef {
            name: name.to_string(),
            uid: uid_of(&sa),
        },
        pod,
        secret,
        audiences: audiences.clone(),
        expiration_seconds: req.expiration_seconds,
    };
    let claims = tokens.claims(&spec, chrono::Utc::now().timestamp());
    let token = tokens
        .sign(&claims)
        .map_err(|e| ApiError::Internal(format!("failed to generate token: {e}")))?;
    let at = |secs: i64| {
        k8s_openapi::jiff::Timestamp::from_second(secs)
            .map(Time)
            .map_err(|e| ApiError::Internal(format!("token expiry out of range: {e}")))
    };
    let expires = at(claims.exp)?;
    let out = authn::TokenRequest {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace),
            creation_timestamp: Some(at(claims.iat)?),
            ..Default::default()
        },
        spec: authn::TokenRequestSpec {
            audiences,
            expiration_seconds: Some(req.expiration_seconds),
            bound_object_ref: req.bound.as_ref().map(|r| authn::BoundObjectReference {
                api_version: Some(r.api_version.clone()).filter(|s| !s.is_empty()),
                kind: Some(r.kind.clone()),
                name: Some(r.name.clone()),
                uid: Some(r.uid.clone()).filter(|s| !s.is_empty()),
            }),
        },
        status: Some(authn::TokenRequestStatus {
            token,
            expiration_timestamp: expires,
        }),
    };
    let mut body = serde_json::to_value(&out)
        .map_err(|e| ApiError::Internal(format!("cannot encode the TokenRequest: {e}")))?;
    if let Some(obj) = body.as_object_mut() {
        obj.insert("kind".into(), Value::from(KIND));
        obj.insert("apiVersion".into(), Value::from(format!("{GROUP}/v1")));
    }
    Ok(JsonResponse {
        code: StatusCode::CREATED,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_empty_request_gets_the_default_hour_and_no_audiences() {
        let r = parse(&json!({"spec": {"audiences": null}})).expect("parse");
        assert_eq!(r.expiration_seconds, 3600);
        assert!(r.audiences.is_empty());
        assert!(r.bound.is_none());
        assert!(validate(&r).is_ok());
    }

    #[test]
    fn less_than_ten_minutes_is_invalid_like_upstream() {
        let r = parse(&json!({"spec": {"expirationSeconds": 599}})).expect("parse");
        let err = validate(&r).expect_err("invalid");
        let status = err.status();
        assert_eq!(status["code"], 422);
        assert_eq!(status["reason"], "Invalid");
        assert_eq!(
            status["details"]["causes"][0]["field"],
            "spec.expirationSeconds"
        );
        assert!(status["message"]
            .as_str()
            .is_some_and(|m| m.contains("may not specify a duration less than 10 minutes")));
        let ten = parse(&json!({"spec": {"expirationSeconds": 600}})).expect("parse");
        assert!(validate(&ten).is_ok());
    }

    #[test]
    fn a_bound_object_reference_is_read_with_its_uid() {
        let r = parse(&json!({"spec": {
            "audiences": ["a", "b"],
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": "u1"},
        }}))
        .expect("parse");
        assert_eq!(r.audiences, vec!["a", "b"]);
        assert_eq!(
            r.bound,
            Some(BoundRef {
                api_version: "v1".into(),
                kind: "Pod".into(),
                name: "web".into(),
                uid: "u1".into(),
            })
        );
    }
}
