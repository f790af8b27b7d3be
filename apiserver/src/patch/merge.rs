//! Editing objects for server-side apply: merging an applied
//! configuration into the live object, and removing owned paths.

use serde_json::{Map, Value};

use super::fieldset::{keyed_ids, FieldPath, Walker};
use super::schema::ListType;

impl Walker<'_> {
    /// Merges an applied configuration into the live object (upstream
    /// `TypedValue.Merge`): maps merge, keyed lists and sets merge by
    /// identity keeping live-only items in place, everything else is taken
    /// from the configuration. `None` means "remove the field".
    pub fn merge(&self, live: Option<&Value>, config: &Value) -> Option<Value> {
        self.merge_at(live, config, &mut Vec::new())
    }

    fn merge_at(
        &self,
        live: Option<&Value>,
        config: &Value,
        names: &mut Vec<String>,
    ) -> Option<Value> {
        match (live, config) {
            (_, Value::Null) => None,
            (_, Value::Object(_)) if self.kind.is_atomic_map(names) => Some(strip_nulls(config)),
            (live, Value::Object(c)) => {
                let mut out = match live {
                    Some(Value::Object(l)) => l.clone(),
                    _ => Map::new(),
                };
                for (key, value) in c {
                    names.push(key.clone());
                    match self.merge_at(out.get(key), value, names) {
                        Some(merged) => {
                            out.insert(key.clone(), merged);
                        }
                        None => {
                            out.shift_remove(key);
                        }
                    }
                    names.pop();
                }
                Some(Value::Object(out))
            }
            (live, Value::Array(c)) => {
                let l: &[Value] = match live {
                    Some(Value::Array(l)) => l,
                    _ => &[],
                };
                let merged = match self.kind.list_type(names) {
                    ListType::Set if c.iter().chain(l).all(|i| !i.is_object() && !i.is_array()) => {
                        interleave(l, c, |v| Some(v.clone()), |_, v| strip_nulls(v))
                    }
                    ListType::Map(key)
                        if keyed_ids(c, key).is_some() && keyed_ids(l, key).is_some() =>
                    {
                        let id = |v: &Value| v.get(key).cloned();
                        interleave(l, c, id, |lv, cv| {
                            self.merge_at(lv, cv, names).unwrap_or(Value::Null)
                        })
                    }
                    _ => c.iter().map(strip_nulls).collect(),
                };
                Some(Value::Array(merged))
            }
            (_, scalar) => Some(scalar.clone()),
        }
    }

    /// Removes the node at `path` from `object`; objects left empty by the
    /// removal are removed too. Key fields of list items are never removed.
    pub fn remove(&self, object: &mut Value, path: &FieldPath) {
        remove_at(object, path);
    }
}

fn strip_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

/// Merges two lists by item identity the way upstream does: walking both
/// lists, live-only items are kept where they are, configuration items come
/// in configuration order, and a shared item is placed where the
/// configuration puts it.
fn interleave(
    live: &[Value],
    config: &[Value],
    id: impl Fn(&Value) -> Option<Value>,
    mut merge: impl FnMut(Option<&Value>, &Value) -> Value,
) -> Vec<Value> {
    let live_ids: Vec<Option<Value>> = live.iter().map(&id).collect();
    let config_ids: Vec<Option<Value>> = config.iter().map(&id).collect();
    let in_live = |r: usize| live_ids.iter().position(|l| *l == config_ids[r]);
    let shared: Vec<usize> = (0..config.len())
        .filter(|r| in_live(*r).is_some())
        .collect();
    let mut done = vec![false; config.len()];
    let mut out = Vec::with_capacity(live.len() + config.len());
    let (mut l, mut r) = (0, 0);
    while l < live.len() || r < config.len() {
        if l < live.len() && r < config.len() && live_ids[l] == config_ids[r] {
            out.push(merge(Some(&live[l]), &config[r]));
            done[r] = true;
            (l, r) = (l + 1, r + 1);
            continue;
        }
        if l < live.len() {
            let next_shared = shared.iter().copied().find(|s| !done[*s]);
            match config_ids.iter().position(|c| *c == live_ids[l]) {
                None => {
                    out.push(live[l].clone());
                    l += 1;
                    continue;
                }
                Some(at) if done[at] || (r < config.len() && next_shared != Some(at)) => {
                    l += 1;
                    continue;
                }
                Some(_) if r >= config.len() => {
                    l += 1;
                    continue;
                }
                Some(_) => {}
            }
        }
        if r < config.len() {
            out.push(merge(in_live(r).map(|i| &live[i]), &config[r]));
            done[r] = true;
            r += 1;
        }
    }
    out
}

fn matches_element(item: &Value, elem: &str) -> bool {
    if let Some(key) = elem.strip_prefix("k:") {
        let Ok(id) = serde_json::from_str::<Map<String, Value>>(key) else {
            return false;
        };
        item.as_object()
            .is_some_and(|m| id.iter().all(|(k, v)| m.get(k) == Some(v)))
    } else if let Some(value) = elem.strip_prefix("v:") {
        serde_json::from_str::<Value>(value).is_ok_and(|v| &v == item)
    } else {
        false
    }
}

fn remove_at(node: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        match node {
            Value::Object(map) => {
                if let Some(name) = first.strip_prefix("f:") {
                    map.shift_remove(name);
                }
            }
            Value::Array(items) => {
                if let Some(index) = first
                    .strip_prefix("i:")
                    .and_then(|i| i.parse::<usize>().ok())
                {
                    if index < items.len() {
                        items.remove(index);
                    }
                } else {
                    items.retain(|item| !matches_element(item, first));
                }
            }
            _ => {}
        }
        return;
    }
    match node {
        Value::Object(map) => {
            let Some(name) = first.strip_prefix("f:") else {
                return;
            };
            let Some(child) = map.get_mut(name) else {
                return;
            };
            remove_at(child, rest);
            if child.as_object().is_some_and(Map::is_empty) {
                map.shift_remove(name);
            }
        }
        Value::Array(items) => {
            // Never strip a list item's key field: the item would lose its identity.
            if let (Some(key), [field]) = (first.strip_prefix("k:"), rest) {
                let is_key = serde_json::from_str::<Map<String, Value>>(key)
                    .is_ok_and(|id| field.strip_prefix("f:").is_some_and(|f| id.contains_key(f)));
                if is_key {
                    return;
                }
            }
            if let Some(item) = items.iter_mut().find(|item| matches_element(item, first)) {
                remove_at(item, rest);
            }
        }
        _ => {}
    }
}
