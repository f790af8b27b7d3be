//! The patch engine: pure functions from a stored object and a PATCH body
//! to the object to store. No I/O, no storage, no HTTP types: handlers map
//! [`PatchError`] and [`ApplyError`] to a Kubernetes `Status` with
//! [`PatchError::status_code`] / [`PatchError::reason`].
//!
//! - [`apply_patch`] handles `kubectl patch --type json|merge|strategic`,
//!   `kubectl edit`, `label`, `annotate`, `scale` and client-side
//!   `kubectl apply` (a three-way strategic merge patch with directives).
//! - [`server_side_apply`] handles `kubectl apply --server-side` and kube-rs
//!   `Patch::Apply`; [`record_update`] keeps `metadata.managedFields` right
//!   for every other write, so that later applies see conflicts.
//!
//! RFC 6902 and RFC 7386 come from the `json-patch` crate; strategic merge
//! and field ownership are ours, following apimachinery's semantics.

mod apply;
mod fieldset;
mod merge;
mod schema;
mod strategic;

use serde_json::Value;

pub use apply::{record_update, server_side_apply, ApplyError, Conflict};
pub use schema::{ListType, PatchKind};
pub use strategic::{strategic_merge_patch, StrategicError};

/// Upstream's limit on the operations of one JSON patch.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// The four PATCH content types Kubernetes serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json` (built-in kinds only).
    StrategicMerge,
    /// `application/apply-patch+yaml`, server-side apply. The body is YAML
    /// or JSON (JSON is YAML); kube-rs and kubectl both send this type.
    Apply,
}

impl PatchType {
    /// Every content type accepted, for a 415 answer's message.
    pub const SUPPORTED: [&'static str; 4] = [
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    ];

    /// The patch type of a `Content-Type` header, ignoring parameters such
    /// as `; charset=utf-8`. Like Kubernetes, there is no
    /// `application/apply-patch+json`: apply is always sent as `+yaml`.
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        match essence.to_ascii_lowercase().as_str() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
            "application/apply-patch+yaml" => Some(PatchType::Apply),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => Self::SUPPORTED[0],
            PatchType::Merge => Self::SUPPORTED[1],
            PatchType::StrategicMerge => Self::SUPPORTED[2],
            PatchType::Apply => Self::SUPPORTED[3],
        }
    }
}

/// Why a patch could not be applied. Each variant documents its status.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The body is not JSON, or not a JSON Patch document (400 BadRequest).
    #[error("error decoding patch: {0}")]
    Decode(#[from] serde_json::Error),
    /// A JSON patch with more than [`MAX_JSON_PATCH_OPERATIONS`] operations
    /// (413 RequestEntityTooLarge).
    #[error("The allowed maximum operations in a JSON patch is {max}, got {count}")]
    TooManyOperations { count: usize, max: usize },
    /// A JSON patch operation failed: a `test` did not match, or a path
    /// does not exist (422 Invalid, as upstream answers).
    #[error(transparent)]
    JsonPatch(#[from] json_patch::PatchError),
    /// The patch would turn the object into something that is not a JSON
    /// object, e.g. a merge patch that is an array (422 Invalid).
    #[error("the patched object is not a JSON object")]
    NotAnObject,
    /// Strategic merge patch on a custom resource (415
    /// UnsupportedMediaType, as upstream).
    #[error("strategic merge patch is not supported for {kind}.{group}: the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml")]
    StrategicMergeUnsupported { group: String, kind: String },
    /// The strategic merge patch is malformed or cannot be merged (400 for
    /// malformed directives, 422 for unmergeable lists; see
    /// [`StrategicError::status_code`]).
    #[error(transparent)]
    Strategic(#[from] StrategicError),
    /// [`PatchType::Apply`] was passed to [`apply_patch`]; apply needs a
    /// field manager and goes through [`server_side_apply`] (500, a caller
    /// bug).
    #[error("apply patches must go through server_side_apply")]
    ApplyIsNotAPatch,
}

impl PatchError {
    /// The HTTP status Kubernetes answers with.
    pub fn status_code(&self) -> u16 {
        match self {
            PatchError::Decode(_) => 400,
            PatchError::TooManyOperations { .. } => 413,
            PatchError::JsonPatch(_) | PatchError::NotAnObject => 422,
            PatchError::StrategicMergeUnsupported { .. } => 415,
            PatchError::Strategic(e) => e.status_code(),
            PatchError::ApplyIsNotAPatch => 500,
        }
    }

    /// The Kubernetes `Status.reason` for [`PatchError::status_code`].
    pub fn reason(&self) -> &'static str {
        match self.status_code() {
            400 => "BadRequest",
            413 => "RequestEntityTooLarge",
            415 => "UnsupportedMediaType",
            422 => "Invalid",
            _ => "InternalError",
        }
    }
}

/// Applies a JSON, merge or strategic merge patch to `original`.
pub fn apply_patch(
    patch_type: PatchType,
    original: &Value,
    patch_body: &[u8],
    kind: &PatchKind,
) -> Result<Value, PatchError> {
    let patched = match patch_type {
        PatchType::Json => {
            let patch: json_patch::Patch = serde_json::from_slice(patch_body)?;
            if patch.0.len() > MAX_JSON_PATCH_OPERATIONS {
                return Err(PatchError::TooManyOperations {
                    count: patch.0.len(),
                    max: MAX_JSON_PATCH_OPERATIONS,
                });
            }
            let mut doc = original.clone();
            json_patch::patch(&mut doc, &patch)?;
            doc
        }
        PatchType::Merge => {
            let patch: Value = serde_json::from_slice(patch_body)?;
            if !patch.is_object() {
                return Err(PatchError::NotAnObject);
            }
            let mut doc = original.clone();
            json_patch::merge(&mut doc, &patch);
            doc
        }
        PatchType::StrategicMerge => {
            if !kind.supports_strategic_merge() {
                return Err(PatchError::StrategicMergeUnsupported {
                    group: kind.group().to_string(),
                    kind: kind.kind().to_string(),
                });
            }
            let patch: Value = serde_json::from_slice(patch_body)?;
            strategic_merge_patch(original, &patch, kind)?
        }
        PatchType::Apply => return Err(PatchError::ApplyIsNotAPatch),
    };
    if !patched.is_object() {
        return Err(PatchError::NotAnObject);
    }
    Ok(patched)
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
