//! Strategic merge patch (`application/strategic-merge-patch+json`), the
//! patch `kubectl apply` (client-side), `kubectl edit` and `kubectl patch
//! --type strategic` send for built-in kinds.
//!
//! Semantics follow apimachinery's `strategicpatch` package:
//! - maps merge recursively; `null` deletes a field;
//! - lists merge according to [`ListType`]: by a merge key (containers by
//!   `name`), as a set of scalars (finalizers), or are replaced (atomic);
//! - new items of a merged list come before the server-only items, unless the
//!   live list orders them otherwise (Kubernetes' `mergeSortedSlice`);
//! - directives: `$patch: replace | delete | merge` in maps and list items,
//!   `$retainKeys`, `$deleteFromPrimitiveList/<field>` and
//!   `$setElementOrder/<field>`. Directives never reach the result.
//!
//! Deliberate differences from upstream: directives and `null`s inside a
//! field that is new to the object are processed rather than stored verbatim
//! (upstream relies on typed decoding to drop them), and
//! `$deleteFromPrimitiveList` on an absent list is a no-op (upstream would
//! create the list with the values meant for deletion).

use serde_json::{Map, Value};

use super::schema::{ListType, PatchKind};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Why a strategic merge patch could not be applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StrategicError {
    /// The patch body is not a JSON object (400).
    #[error("strategic merge patch must be a JSON object")]
    PatchNotObject,
    /// The stored object is not a JSON object (422; a caller bug upstream).
    #[error("the object being patched is not a JSON object")]
    OriginalNotObject,
    /// `$patch` has a value other than `replace`, `delete` or `merge`, or
    /// `merge` was used inside a list (400).
    #[error("unknown patch type: {directive} in {path}")]
    BadPatchType { directive: String, path: String },
    /// `$retainKeys` is not a list of strings, or the patch sets a field
    /// that is not listed in it (400).
    #[error("invalid patch format of retainKeys in {path}")]
    BadRetainKeys { path: String },
    /// `$deleteFromPrimitiveList/<field>` is malformed (400).
    #[error("invalid patch format of primitive list in {path}")]
    BadPrimitiveList { path: String },
    /// `$setElementOrder/<field>` is malformed or disagrees with the order
    /// of the patch list (400).
    #[error("invalid patch format of setElementOrder list in {path}: {reason}")]
    BadSetElementOrder { path: String, reason: String },
    /// An item of a list merged by key lacks the key (422).
    #[error("map: {item} does not contain declared merge key: {key} (in {path})")]
    MissingMergeKey {
        item: String,
        key: String,
        path: String,
    },
    /// Lists of lists cannot be merged (422).
    #[error("lists of lists are not supported (in {path})")]
    ListOfLists { path: String },
    /// A merged list mixes objects and scalars, or a merge-by-key list has
    /// scalar items (422).
    #[error("list element types are not identical (in {path})")]
    MixedListItems { path: String },
}

impl StrategicError {
    /// The HTTP status Kubernetes answers with for this error.
    pub fn status_code(&self) -> u16 {
        match self {
            StrategicError::PatchNotObject
            | StrategicError::BadPatchType { .. }
            | StrategicError::BadRetainKeys { .. }
            | StrategicError::BadPrimitiveList { .. }
            | StrategicError::BadSetElementOrder { .. } => 400,
            StrategicError::OriginalNotObject
            | StrategicError::MissingMergeKey { .. }
            | StrategicError::ListOfLists { .. }
            | StrategicError::MixedListItems { .. } => 422,
        }
    }
}

/// Applies a strategic merge patch to `original`, returning the new object.
pub fn strategic_merge_patch(
    original: &Value,
    patch: &Value,
    kind: &PatchKind,
) -> Result<Value, StrategicError> {
    let Value::Object(original) = original else {
        return Err(StrategicError::OriginalNotObject);
    };
    let Value::Object(patch) = patch else {
        return Err(StrategicError::PatchNotObject);
    };
    let merger = Merger { kind };
    let merged = merger.merge_map(original.clone(), patch.clone(), &mut Vec::new())?;
    Ok(Value::Object(merged))
}

/// An item's identity inside a merged list: its merge-key value for lists
/// of objects, the item itself for sets of scalars.
type Keyed = (Value, Value);

struct Merger<'k> {
    kind: &'k PatchKind,
}

impl Merger<'_> {
    fn merge_map(
        &self,
        mut original: Map<String, Value>,
        mut patch: Map<String, Value>,
        path: &mut Vec<String>,
    ) -> Result<Map<String, Value>, StrategicError> {
        if let Some(directive) = patch.shift_remove(DIRECTIVE) {
            match directive.as_str() {
                // Replace: the rest of the patch, itself cleaned of directives.
                Some("replace") => return self.merge_map(Map::new(), patch, path),
                Some("delete") => return Ok(Map::new()),
                Some("merge") => {}
                _ => {
                    return Err(StrategicError::BadPatchType {
                        directive: directive.to_string(),
                        path: dotted(path),
                    })
                }
            }
        }
        if let Some(retain) = patch.shift_remove(RETAIN_KEYS) {
            apply_retain_keys(&mut original, &patch, &retain, path)?;
        }

        let orders: Vec<String> = patch
            .keys()
            .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
            .cloned()
            .collect();
        for order_key in orders {
            let order = patch.shift_remove(&order_key).unwrap_or(Value::Null);
            let field = order_key[SET_ELEMENT_ORDER.len()..].to_string();
            let bad = |reason: &str| StrategicError::BadSetElementOrder {
                path: dotted(path),
                reason: reason.to_string(),
            };
            if field.is_empty() {
                return Err(bad("missing field name"));
            }
            let Value::Array(order) = order else {
                return Err(bad("not a list"));
            };
            let patch_list = patch.shift_remove(&field);
            path.push(field.clone());
            let merged = self.merge_ordered_list(original.get(&field), patch_list, &order, path);
            path.pop();
            if let Some(list) = merged? {
                original.insert(field, list);
            }
        }

        for (key, value) in patch {
            if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
                let Value::Array(doomed) = value else {
                    return Err(StrategicError::BadPrimitiveList { path: dotted(path) });
                };
                if let Some(Value::Array(items)) = original.get_mut(field) {
                    items.retain(|item| !doomed.contains(item));
                }
                continue;
            }
            if value.is_null() {
                original.shift_remove(&key);
                continue;
            }
            path.push(key.clone());
            let merged = match (original.get_mut(&key).map(Value::take), value) {
                (Some(Value::Object(live)), Value::Object(patch)) => {
                    self.merge_map(live, patch, path).map(Value::Object)
                }
                (Some(Value::Array(live)), Value::Array(patch)) => {
                    self.merge_list(live, patch, path).map(Value::Array)
                }
                (_, value) => self.clean(value, path),
            };
            path.pop();
            original.insert(key, merged?);
        }
        Ok(original)
    }

    /// A patch value for a field the object does not have yet: merged into
    /// nothing, so that directives and `null`s are processed.
    fn clean(&self, value: Value, path: &mut Vec<String>) -> Result<Value, StrategicError> {
        match value {
            Value::Object(map) => self.merge_map(Map::new(), map, path).map(Value::Object),
            Value::Array(items) => self.merge_list(Vec::new(), items, path).map(Value::Array),
            scalar => Ok(scalar),
        }
    }

    fn merge_list(
        &self,
        original: Vec<Value>,
        patch: Vec<Value>,
        path: &mut Vec<String>,
    ) -> Result<Vec<Value>, StrategicError> {
        if patch.iter().any(Value::is_array) {
            return Err(StrategicError::ListOfLists { path: dotted(path) });
        }
        match self.kind.list_type(path) {
            ListType::Atomic => patch.into_iter().map(|v| self.clean(v, path)).collect(),
            ListType::Set => merge_set(original, patch, path),
            ListType::Map(key) => self.merge_by_key(original, patch, key, path),
        }
    }

    fn merge_by_key(
        &self,
        mut original: Vec<Value>,
        patch: Vec<Value>,
        key: &str,
        path: &mut Vec<String>,
    ) -> Result<Vec<Value>, StrategicError> {
        let mut items = Vec::with_capacity(patch.len());
        let mut replace = false;
        for item in patch {
            let Value::Object(item) = item else {
                return Err(StrategicError::MixedListItems { path: dotted(path) });
            };
            let Some(directive) = item.get(DIRECTIVE).cloned() else {
                items.push(item);
                continue;
            };
            match directive.as_str() {
                Some("delete") => {
                    let id = merge_key(&item, key, path)?.clone();
                    original.retain(|live| live.get(key) != Some(&id));
                }
                // The marker item itself is dropped, as upstream does.
                Some("replace") => replace = true,
                _ => {
                    return Err(StrategicError::BadPatchType {
                        directive: directive.to_string(),
                        path: dotted(path),
                    })
                }
            }
        }
        if replace {
            original = Vec::with_capacity(items.len());
            for item in std::mem::take(&mut items) {
                original.push(Value::Object(self.merge_map(Map::new(), item, path)?));
            }
        }

        let server_order = identities(&original, Some(key), path)?;
        let mut patch_order = Vec::with_capacity(items.len());
        for item in items {
            let id = merge_key(&item, key, path)?.clone();
            patch_order.push(id.clone());
            let position = original.iter().position(|live| live.get(key) == Some(&id));
            match position.map(|i| (i, original[i].take())) {
                Some((i, Value::Object(live))) => {
                    original[i] = Value::Object(self.merge_map(live, item, path)?);
                }
                Some((_, _)) => return Err(StrategicError::MixedListItems { path: dotted(path) }),
                None => original.push(Value::Object(self.merge_map(Map::new(), item, path)?)),
            }
        }
        let merged = keyed(original, Some(key), path)?;
        let (in_patch, server_only) = partition(merged, &patch_order);
        Ok(normalize_order(
            in_patch,
            server_only,
            &patch_order,
            &server_order,
        ))
    }

    /// A list with a `$setElementOrder/<field>` directive: merge the live
    /// list and the patch list, then order the result by the directive
    /// (precedence: directive, then patch, then live order).
    fn merge_ordered_list(
        &self,
        live: Option<&Value>,
        patch: Option<Value>,
        order: &[Value],
        path: &mut Vec<String>,
    ) -> Result<Option<Value>, StrategicError> {
        let bad = |reason: &str, path: &[String]| StrategicError::BadSetElementOrder {
            path: dotted(path),
            reason: reason.to_string(),
        };
        let live = match live {
            Some(Value::Array(items)) => Some(items.clone()),
            Some(Value::Null) | None => None,
            Some(_) => return Err(bad("the live field is not a list", path)),
        };
        let patch = match patch {
            Some(Value::Array(items)) => Some(items),
            Some(Value::Null) | None => None,
            Some(_) => return Err(bad("the patch field is not a list", path)),
        };
        let list_type = self.kind.list_type(path);
        let key = match list_type {
            ListType::Map(key) => Some(key),
            _ => None,
        };
        if let Some(patch) = &patch {
            validate_order(patch, order, key, path)?;
        }
        let server_order = match &live {
            Some(items) => identities(items, key, path)?,
            None => Vec::new(),
        };
        let merged = match (live, patch) {
            (Some(live), Some(patch)) => self.merge_list(live, patch, path)?,
            (Some(live), None) => live,
            (None, Some(patch)) => self.merge_list(Vec::new(), patch, path)?,
            (None, None) => return Ok(None),
        };
        if list_type == ListType::Atomic {
            return Ok(Some(Value::Array(merged)));
        }
        let order = identities(order, key, path)?;
        let (in_order, server_only) = partition(keyed(merged, key, path)?, &order);
        let sorted = normalize_order(in_order, server_only, &order, &server_order);
        Ok(Some(Value::Array(sorted)))
    }
}

fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    retain: &Value,
    path: &[String],
) -> Result<(), StrategicError> {
    let bad = || StrategicError::BadRetainKeys { path: dotted(path) };
    let Value::Array(list) = retain else {
        return Err(bad());
    };
    let mut keep = Vec::with_capacity(list.len());
    for key in list {
        keep.push(key.as_str().ok_or_else(bad)?);
    }
    for (key, value) in patch {
        let directive =
            key.starts_with(SET_ELEMENT_ORDER) || key.starts_with(DELETE_FROM_PRIMITIVE_LIST);
        if !value.is_null() && !directive && !keep.contains(&key.as_str()) {
            return Err(bad());
        }
    }
    original.retain(|key, _| keep.contains(&key.as_str()));
    Ok(())
}

/// Sets of scalars: live items, then new patch items, de-duplicated and
/// ordered as Kubernetes does.
fn merge_set(
    original: Vec<Value>,
    patch: Vec<Value>,
    path: &[String],
) -> Result<Vec<Value>, StrategicError> {
    if original.iter().chain(&patch).any(Value::is_object) {
        return Err(StrategicError::MixedListItems { path: dotted(path) });
    }
    let server_order = original.clone();
    let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
    for item in original.into_iter().chain(patch.iter().cloned()) {
        if !merged.contains(&item) {
            merged.push(item);
        }
    }
    let (in_patch, server_only) = partition(keyed(merged, None, path)?, &patch);
    Ok(normalize_order(
        in_patch,
        server_only,
        &patch,
        &server_order,
    ))
}

fn validate_order(
    patch: &[Value],
    order: &[Value],
    key: Option<&str>,
    path: &[String],
) -> Result<(), StrategicError> {
    let order = identities(order, key, path)?;
    let mut cursor = order.iter();
    for item in patch {
        if item.get(DIRECTIVE).is_some() {
            continue;
        }
        let id = identity(item, key, path)?;
        if !cursor.any(|o| o == id) {
            return Err(StrategicError::BadSetElementOrder {
                path: dotted(path),
                reason: "the patch list is not in the order of the directive".to_string(),
            });
        }
    }
    Ok(())
}

fn merge_key<'v>(
    item: &'v Map<String, Value>,
    key: &str,
    path: &[String],
) -> Result<&'v Value, StrategicError> {
    item.get(key)
        .ok_or_else(|| StrategicError::MissingMergeKey {
            item: Value::Object(item.clone()).to_string(),
            key: key.to_string(),
            path: dotted(path),
        })
}

fn identity<'v>(
    item: &'v Value,
    key: Option<&str>,
    path: &[String],
) -> Result<&'v Value, StrategicError> {
    match (key, item) {
        (None, item) => Ok(item),
        (Some(key), Value::Object(map)) => merge_key(map, key, path),
        (Some(_), _) => Err(StrategicError::MixedListItems { path: dotted(path) }),
    }
}

fn identities(
    items: &[Value],
    key: Option<&str>,
    path: &[String],
) -> Result<Vec<Value>, StrategicError> {
    items
        .iter()
        .map(|item| identity(item, key, path).cloned())
        .collect()
}

fn keyed(
    items: Vec<Value>,
    key: Option<&str>,
    path: &[String],
) -> Result<Vec<Keyed>, StrategicError> {
    items
        .into_iter()
        .map(|item| Ok((identity(&item, key, path)?.clone(), item)))
        .collect()
}

/// Splits items into those whose identity is in `by` and the rest.
fn partition(items: Vec<Keyed>, by: &[Value]) -> (Vec<Keyed>, Vec<Keyed>) {
    items.into_iter().partition(|(id, _)| by.contains(id))
}

/// Sorts `in_patch` by `patch_order` and `server_only` by `server_order`,
/// then interleaves them: a server-only item goes first only when the live
/// list had it before the competing patch item.
fn normalize_order(
    mut in_patch: Vec<Keyed>,
    mut server_only: Vec<Keyed>,
    patch_order: &[Value],
    server_order: &[Value],
) -> Vec<Value> {
    let position = |order: &[Value], id: &Value| order.iter().position(|o| o == id);
    in_patch.sort_by_key(|(id, _)| position(patch_order, id).unwrap_or(usize::MAX));
    server_only.sort_by_key(|(id, _)| position(server_order, id).unwrap_or(usize::MAX));

    let mut out = Vec::with_capacity(in_patch.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = in_patch.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((l, _)), Some((r, _))) => {
                match (position(server_order, l), position(server_order, r)) {
                    (Some(li), Some(ri)) => li < ri,
                    _ => false,
                }
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        if let Some((_, item)) = next {
            out.push(item);
        }
    }
    out
}

fn dotted(path: &[String]) -> String {
    if path.is_empty() {
        "the object root".to_string()
    } else {
        path.join(".")
    }
}

#[cfg(test)]
#[path = "strategic_tests.rs"]
mod tests;
