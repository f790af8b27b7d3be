//! API errors, and the one place they become Kubernetes `Status` responses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::store::StoreError;

/// One field-level cause inside a `Status`'s `details.causes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// Kubernetes' cause type, e.g. `FieldValueInvalid`.
    pub reason: String,
    pub message: String,
    pub field: String,
}

/// What identifies the object an error is about, for `Status.details`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    pub group: String,
    /// The resource (plural) or kind, as Kubernetes puts it in `details.kind`.
    pub kind: String,
    pub name: String,
}

impl Target {
    pub fn new(group: &str, kind: &str, name: &str) -> Self {
        Self {
            group: group.to_string(),
            kind: kind.to_string(),
            name: name.to_string(),
        }
    }

    /// `pods "web"` or `deployments.apps "web"`, as Kubernetes words it.
    fn qualified(&self) -> String {
        let resource = if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        };
        format!("{resource} {:?}", self.name)
    }
}

/// Everything a request can fail with. Each variant maps to one HTTP code and
/// `Status.reason`.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ApiError {
    #[error("{} not found", .0.qualified())]
    NotFound(Target),
    #[error("{} already exists", .0.qualified())]
    AlreadyExists(Target),
    #[error("Operation cannot be fulfilled on {}: {message}", .target.qualified())]
    Conflict { target: Target, message: String },
    /// A server-side apply conflict: 409 with one cause per conflicting field.
    #[error("{message}")]
    ApplyConflict {
        target: Target,
        message: String,
        causes: Vec<Cause>,
    },
    #[error("{kind} {name:?} is invalid: {}", summarize(.causes))]
    Invalid {
        group: String,
        kind: String,
        name: String,
        causes: Vec<Cause>,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("Unauthorized")]
    Unauthorized,
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    #[error("the server could not find the requested resource")]
    UnknownResource,
    #[error("{0}")]
    Gone(String),
    #[error("the request body is larger than the {0} byte limit")]
    TooLarge(usize),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

fn summarize(causes: &[Cause]) -> String {
    let parts: Vec<String> = causes
        .iter()
        .map(|c| {
            if c.field.is_empty() {
                c.message.clone()
            } else {
                format!("{}: {}", c.field, c.message)
            }
        })
        .collect();
    if parts.len() == 1 {
        parts.concat()
    } else {
        format!("[{}]", parts.join(", "))
    }
}

impl ApiError {
    pub fn code(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) | ApiError::UnknownResource => StatusCode::NOT_FOUND,
            ApiError::AlreadyExists(_)
            | ApiError::Conflict { .. }
            | ApiError::ApplyConflict { .. } => StatusCode::CONFLICT,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// `Status.reason`, as Kubernetes' `metav1.StatusReason`.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound(_) | ApiError::UnknownResource => "NotFound",
            ApiError::AlreadyExists(_) => "AlreadyExists",
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => "Conflict",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::Gone(_) => "Expired",
            ApiError::TooLarge(_) => "RequestEntityTooLarge",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::NotAcceptable(_) => "NotAcceptable",
            ApiError::TooManyRequests(_) => "TooManyRequests",
            ApiError::Unavailable(_) => "ServiceUnavailable",
            ApiError::Internal(_) => "InternalError",
        }
    }

    /// The `Status` object.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code().as_u16(),
        });
        let details = match self {
            ApiError::NotFound(t)
            | ApiError::AlreadyExists(t)
            | ApiError::Conflict { target: t, .. } => Some(details(t, &[])),
            ApiError::ApplyConflict { target, causes, .. } => Some(details(target, causes)),
            ApiError::Invalid {
                group,
                kind,
                name,
                causes,
            } => Some(details(&Target::new(group, kind, name), causes)),
            _ => None,
        };
        if let (Some(d), Some(obj)) = (details, status.as_object_mut()) {
            obj.insert("details".to_string(), d);
        }
        status
    }

    /// A single-cause 422.
    pub fn invalid_field(group: &str, kind: &str, name: &str, field: &str, message: &str) -> Self {
        ApiError::Invalid {
            group: group.to_string(),
            kind: kind.to_string(),
            name: name.to_string(),
            causes: vec![Cause {
                reason: "FieldValueInvalid".to_string(),
                message: message.to_string(),
                field: field.to_string(),
            }],
        }
    }

    /// Maps a store error about `target` to an API error.
    pub fn from_store(err: StoreError, target: &Target) -> Self {
        match err {
            StoreError::NotFound(_) => ApiError::NotFound(target.clone()),
            StoreError::AlreadyExists(_) => ApiError::AlreadyExists(target.clone()),
            StoreError::Conflict { .. } => ApiError::Conflict {
                target: target.clone(),
                message: "the object has been modified; please apply your changes to the latest version and try again"
                    .to_string(),
            },
            StoreError::Compacted { requested, oldest } => {
                ApiError::Gone(format!("too old resource version: {requested} ({oldest})"))
            }
            StoreError::Unavailable(m) => ApiError::Unavailable(format!("storage is unavailable: {m}")),
            StoreError::Corrupt(m) => ApiError::Internal(format!("stored data is corrupt: {m}")),
        }
    }
}

fn details(t: &Target, causes: &[Cause]) -> Value {
    let mut d = json!({"name": t.name, "kind": t.kind});
    if let Some(obj) = d.as_object_mut() {
        if !t.group.is_empty() {
            obj.insert("group".to_string(), Value::String(t.group.clone()));
        }
        if !causes.is_empty() {
            let list: Vec<Value> = causes
                .iter()
                .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                .collect();
            obj.insert("causes".to_string(), Value::Array(list));
        }
    }
    d
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        if code.is_server_error() {
            tracing::warn!(error = %self, code = code.as_u16(), "request failed");
        }
        let body = serde_json::to_vec(&self.status()).unwrap_or_default();
        let mut resp = (code, body).into_response();
        resp.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        );
        if matches!(self, ApiError::Unauthorized) {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"skiff\""),
            );
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_reads_like_kubernetes() {
        let e = ApiError::NotFound(Target::new("apps", "deployments", "web"));
        let s = e.status();
        assert_eq!(s["code"], 404);
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["message"], "deployments.apps \"web\" not found");
        assert_eq!(s["details"]["group"], "apps");
    }

    #[test]
    fn invalid_lists_one_cause_per_field() {
        let e = ApiError::Invalid {
            group: String::new(),
            kind: "Pod".into(),
            name: "p".into(),
            causes: vec![
                Cause {
                    reason: "FieldValueRequired".into(),
                    message: "Required value".into(),
                    field: "spec.containers".into(),
                },
                Cause {
                    reason: "FieldValueInvalid".into(),
                    message: "bad".into(),
                    field: "metadata.name".into(),
                },
            ],
        };
        let s = e.status();
        assert_eq!(s["code"], 422);
        assert_eq!(s["details"]["causes"].as_array().map(Vec::len), Some(2));
        assert!(s["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("Pod \"p\" is invalid: ["));
    }
}
