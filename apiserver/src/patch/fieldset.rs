//! Field sets for server-side apply: which fields of an object a manager
//! owns, how two objects differ field by field, and the `FieldsV1` wire
//! format of `metadata.managedFields[*].fieldsV1`.
//!
//! A path element is kept in its `FieldsV1` spelling, which makes the wire
//! format trivial and gives a total order: `f:<field>` for a field,
//! `k:{"name":"x"}` for an item of a list merged by key, `v:<json>` for an
//! item of a set, `i:<n>` for an index (read and written back, never made).
//! A path is a member of a set when the node itself is owned; in `FieldsV1`
//! a member that also has owned children carries a `.` entry.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::schema::{ListType, PatchKind};

/// A path into an object, one `FieldsV1` element per step.
pub type FieldPath = Vec<String>;

/// A set of owned paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet(BTreeSet<FieldPath>);

impl FieldSet {
    pub fn insert(&mut self, path: FieldPath) {
        self.0.insert(path);
    }

    #[cfg(test)]
    pub fn contains(&self, path: &FieldPath) -> bool {
        self.0.contains(path)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &FieldPath> {
        self.0.iter()
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.union(&other.0).cloned().collect())
    }

    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.difference(&other.0).cloned().collect())
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.intersection(&other.0).cloned().collect())
    }

    /// Whether `path` or anything below it is in the set.
    pub fn covers(&self, path: &FieldPath) -> bool {
        self.0
            .range(path.clone()..)
            .next()
            .is_some_and(|p| p.starts_with(path))
    }

    /// Drops every path that starts with one of `prefixes`.
    pub fn without_prefixes(&self, prefixes: &[FieldPath]) -> FieldSet {
        FieldSet(
            self.0
                .iter()
                .filter(|p| !prefixes.iter().any(|pre| p.starts_with(pre)))
                .cloned()
                .collect(),
        )
    }

    /// Parses a `fieldsV1` object; malformed parts are skipped.
    pub fn from_fields_v1(value: &Value) -> FieldSet {
        fn walk(value: &Value, prefix: &mut FieldPath, out: &mut FieldSet) {
            let Value::Object(map) = value else { return };
            if map.is_empty() && !prefix.is_empty() {
                out.insert(prefix.clone());
            }
            for (key, child) in map {
                if key == "." {
                    if !prefix.is_empty() {
                        out.insert(prefix.clone());
                    }
                    continue;
                }
                prefix.push(key.clone());
                walk(child, prefix, out);
                prefix.pop();
            }
        }
        let mut out = FieldSet::default();
        walk(value, &mut Vec::new(), &mut out);
        out
    }

    /// Encodes the set as a `fieldsV1` object (keys sorted, `.` first).
    pub fn to_fields_v1(&self) -> Value {
        let mut root = Map::new();
        for path in &self.0 {
            let mut node = &mut root;
            for depth in 0..path.len() {
                let prefix = &path[..depth];
                if depth > 0 && node.is_empty() && self.0.contains(prefix) {
                    node.insert(".".to_string(), Value::Object(Map::new()));
                }
                let child = node
                    .entry(path[depth].clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !child.is_object() {
                    *child = Value::Object(Map::new());
                }
                let Value::Object(child) = child else { break };
                node = child;
            }
        }
        Value::Object(root)
    }
}

/// Renders a path the way Kubernetes prints it in conflicts:
/// `.spec.template.spec.containers[name="nginx"].image`.
pub fn path_string(path: &FieldPath) -> String {
    let mut out = String::new();
    for elem in path {
        if let Some(name) = elem.strip_prefix("f:") {
            out.push('.');
            out.push_str(name);
        } else if let Some(key) = elem.strip_prefix("k:") {
            let fields = match serde_json::from_str::<Map<String, Value>>(key) {
                Ok(map) => map
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
                Err(_) => key.to_string(),
            };
            out.push_str(&format!("[{fields}]"));
        } else if let Some(value) = elem.strip_prefix("v:") {
            out.push_str(&format!("[={value}]"));
        } else if let Some(index) = elem.strip_prefix("i:") {
            out.push_str(&format!("[{index}]"));
        } else {
            out.push_str(elem);
        }
    }
    out
}

/// What changed between two versions of an object.
#[derive(Debug, Default)]
pub struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

impl Comparison {
    /// Paths whose value is new or different.
    pub fn changed(&self) -> FieldSet {
        self.added.union(&self.modified)
    }
}

/// How a value is walked, decided by the schema at its position.
enum Shape<'v> {
    Leaf,
    Object(&'v Map<String, Value>),
    Set(&'v [Value]),
    Keyed(&'v [Value], &'static str),
}

/// Schema-aware walks over objects of one kind.
pub struct Walker<'k> {
    pub kind: &'k PatchKind,
}

impl Walker<'_> {
    fn shape<'v>(&self, value: &'v Value, names: &[String]) -> Shape<'v> {
        match value {
            Value::Object(map) if !map.is_empty() && !self.kind.is_atomic_map(names) => {
                Shape::Object(map)
            }
            Value::Array(items) => match self.kind.list_type(names) {
                ListType::Set if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
                    Shape::Set(items)
                }
                ListType::Map(key) if keyed_ids(items, key).is_some() => Shape::Keyed(items, key),
                _ => Shape::Leaf,
            },
            _ => Shape::Leaf,
        }
    }

    /// The paths a manager owns by setting `value` (upstream `ToFieldSet`):
    /// leaves, list items and atomic values; `null`s are not owned.
    pub fn members(&self, value: &Value) -> FieldSet {
        let mut out = FieldSet::default();
        self.members_at(value, &mut Vec::new(), &mut Vec::new(), &mut out);
        out
    }

    fn members_at(
        &self,
        value: &Value,
        fp: &mut FieldPath,
        names: &mut Vec<String>,
        out: &mut FieldSet,
    ) {
        match self.shape(value, names) {
            Shape::Leaf => {
                if !fp.is_empty() && !value.is_null() {
                    out.insert(fp.clone());
                }
            }
            Shape::Object(map) => self.object_members(map, fp, names, out),
            Shape::Set(items) => {
                for item in items {
                    fp.push(value_element(item));
                    out.insert(fp.clone());
                    fp.pop();
                }
            }
            Shape::Keyed(items, key) => {
                for item in items {
                    let Value::Object(map) = item else { continue };
                    fp.push(key_element(key, map));
                    out.insert(fp.clone());
                    self.object_members(map, fp, names, out);
                    fp.pop();
                }
            }
        }
    }

    fn object_members(
        &self,
        map: &Map<String, Value>,
        fp: &mut FieldPath,
        names: &mut Vec<String>,
        out: &mut FieldSet,
    ) {
        for (key, child) in map {
            fp.push(format!("f:{key}"));
            names.push(key.clone());
            self.members_at(child, fp, names, out);
            names.pop();
            fp.pop();
        }
    }

    /// Members of a value that appeared or disappeared as a whole; nested
    /// objects below the top level are members too (`.`), as in upstream's
    /// Update sets.
    fn whole(
        &self,
        value: &Value,
        fp: &mut FieldPath,
        names: &mut Vec<String>,
        out: &mut FieldSet,
    ) {
        match self.shape(value, names) {
            Shape::Object(map) => {
                if fp.len() >= 2 {
                    out.insert(fp.clone());
                }
                self.whole_fields(map, fp, names, out);
            }
            Shape::Keyed(items, key) => {
                for item in items {
                    let Value::Object(map) = item else { continue };
                    fp.push(key_element(key, map));
                    out.insert(fp.clone());
                    self.whole_fields(map, fp, names, out);
                    fp.pop();
                }
            }
            _ => self.members_at(value, fp, names, out),
        }
    }

    fn whole_fields(
        &self,
        map: &Map<String, Value>,
        fp: &mut FieldPath,
        names: &mut Vec<String>,
        out: &mut FieldSet,
    ) {
        for (key, child) in map {
            fp.push(format!("f:{key}"));
            names.push(key.clone());
            self.whole(child, fp, names, out);
            names.pop();
            fp.pop();
        }
    }

    /// Field-by-field difference between `old` and `new`.
    pub fn compare(&self, old: &Value, new: &Value) -> Comparison {
        let mut cmp = Comparison::default();
        self.compare_at(
            Some(old),
            Some(new),
            &mut Vec::new(),
            &mut Vec::new(),
            &mut cmp,
        );
        cmp
    }

    /// [`compare`](Self::compare) as if neither object had
    /// `metadata.managedFields` (nor `metadata` when that leaves it empty),
    /// without copying the objects.
    pub fn compare_without_managed_fields(&self, old: &Value, new: &Value) -> Comparison {
        let (Value::Object(o), Value::Object(n)) = (old, new) else {
            return self.compare(old, new);
        };
        if self.kind.is_atomic_map::<&str>(&[]) {
            return self.compare(old, new);
        }
        // Only `metadata` is copied, and without its managedFields.
        let strip = |m: &Map<String, Value>| -> Option<Value> {
            match m.get("metadata") {
                Some(Value::Object(meta)) => {
                    let rest: Map<String, Value> = meta
                        .iter()
                        .filter(|(k, _)| k.as_str() != "managedFields")
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    (!rest.is_empty()).then_some(Value::Object(rest))
                }
                other => other.cloned(),
            }
        };
        let (old_meta, new_meta) = (strip(o), strip(n));
        let mut cmp = Comparison::default();
        let (mut fp, mut names) = (Vec::new(), Vec::new());
        let keys: Vec<&String> = o
            .keys()
            .chain(n.keys().filter(|k| !o.contains_key(*k)))
            .collect();
        for key in keys {
            let (was, is) = if key == "metadata" {
                (old_meta.as_ref(), new_meta.as_ref())
            } else {
                (o.get(key), n.get(key))
            };
            fp.push(format!("f:{key}"));
            names.push(key.clone());
            self.compare_at(was, is, &mut fp, &mut names, &mut cmp);
            names.pop();
            fp.pop();
        }
        cmp
    }

    fn compare_at(
        &self,
        old: Option<&Value>,
        new: Option<&Value>,
        fp: &mut FieldPath,
        names: &mut Vec<String>,
        cmp: &mut Comparison,
    ) {
        let (old, new) = match (old, new) {
            (None, None) => return,
            (None, Some(new)) => return self.whole(new, fp, names, &mut cmp.added),
            (Some(old), None) => return self.whole(old, fp, names, &mut cmp.removed),
            // Equal values have no differences below them: most of an
            // object is unchanged by a write, so this skips the walk. (The
            // walk paired items of a keyed list with duplicate keys by key
            // and could report such an unchanged list as modified.)
            (Some(old), Some(new)) if old == new => return,
            (Some(old), Some(new)) => (old, new),
        };
        let atomic_map = self.kind.is_atomic_map(names);
        match (old, new) {
            (Value::Object(o), Value::Object(n)) if !atomic_map => {
                let keys: Vec<&String> = o
                    .keys()
                    .chain(n.keys().filter(|k| !o.contains_key(*k)))
                    .collect();
                for key in keys {
                    fp.push(format!("f:{key}"));
                    names.push(key.clone());
                    self.compare_at(o.get(key), n.get(key), fp, names, cmp);
                    names.pop();
                    fp.pop();
                }
            }
            _ => match (self.shape(old, names), self.shape(new, names)) {
                (Shape::Set(o), Shape::Set(n)) => {
                    for item in n.iter().filter(|i| !o.contains(i)) {
                        cmp.added.insert(child(fp, value_element(item)));
                    }
                    for item in o.iter().filter(|i| !n.contains(i)) {
                        cmp.removed.insert(child(fp, value_element(item)));
                    }
                }
                (Shape::Keyed(o, key), Shape::Keyed(n, _)) => {
                    let elements = |items: &'_ [Value]| -> Vec<String> {
                        items
                            .iter()
                            .filter_map(Value::as_object)
                            .map(|m| key_element(key, m))
                            .collect()
                    };
                    let (old_ids, new_ids) = (elements(o), elements(n));
                    for (item, elem) in n.iter().zip(&new_ids) {
                        let was = old_ids.iter().position(|e| e == elem).map(|i| &o[i]);
                        fp.push(elem.clone());
                        self.compare_keyed_item(was, Some(item), fp, names, cmp);
                        fp.pop();
                    }
                    for (item, elem) in o.iter().zip(&old_ids) {
                        if !new_ids.contains(elem) {
                            fp.push(elem.clone());
                            self.compare_keyed_item(Some(item), None, fp, names, cmp);
                            fp.pop();
                        }
                    }
                }
                (Shape::Leaf, Shape::Leaf) => {
                    if old != new {
                        cmp.modified.insert(fp.clone());
                    }
                }
                _ => {
                    self.members_at(old, fp, names, &mut cmp.removed);
                    self.members_at(new, fp, names, &mut cmp.added);
                }
            },
        }
    }

    fn compare_keyed_item(
        &self,
        was: Option<&Value>,
        is: Option<&Value>,
        fp: &mut FieldPath,
        names: &mut Vec<String>,
        cmp: &mut Comparison,
    ) {
        match (was, is) {
            (Some(Value::Object(o)), Some(Value::Object(n))) => {
                let keys: Vec<&String> = o
                    .keys()
                    .chain(n.keys().filter(|k| !o.contains_key(*k)))
                    .collect();
                for key in keys {
                    fp.push(format!("f:{key}"));
                    names.push(key.clone());
                    self.compare_at(o.get(key), n.get(key), fp, names, cmp);
                    names.pop();
                    fp.pop();
                }
            }
            (None, Some(Value::Object(n))) => {
                cmp.added.insert(fp.clone());
                self.whole_fields(n, fp, names, &mut cmp.added);
            }
            (Some(Value::Object(o)), None) => {
                cmp.removed.insert(fp.clone());
                self.whole_fields(o, fp, names, &mut cmp.removed);
            }
            _ => {}
        }
    }
}

fn child(fp: &FieldPath, elem: String) -> FieldPath {
    let mut path = fp.clone();
    path.push(elem);
    path
}

fn value_element(item: &Value) -> String {
    format!("v:{item}")
}

fn key_element(key: &str, item: &Map<String, Value>) -> String {
    let mut id = Map::new();
    id.insert(
        key.to_string(),
        item.get(key).cloned().unwrap_or(Value::Null),
    );
    format!("k:{}", Value::Object(id))
}

/// The key values of a keyed list, if every item is an object carrying the
/// key and no key repeats; otherwise the list is treated as atomic.
pub(super) fn keyed_ids<'v>(items: &'v [Value], key: &str) -> Option<Vec<&'v Value>> {
    let mut ids: Vec<&Value> = Vec::with_capacity(items.len());
    for item in items {
        let id = item.as_object()?.get(key).filter(|v| !v.is_null())?;
        if ids.contains(&id) {
            return None;
        }
        ids.push(id);
    }
    Some(ids)
}

#[cfg(test)]
#[path = "fieldset_tests.rs"]
mod tests;
