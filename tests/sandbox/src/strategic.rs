// SPDX-License-Identifier: Apache-2.0
//! Strategic merge patch, as `kubectl apply`, `set image`, `rollout
//! restart` and `edit` send it: maps merge, lists with a merge key in the
//! Kubernetes types (`containers` by `name`, container `ports` by
//! `containerPort`, …) merge element by element, other lists are replaced;
//! `$patch: replace|delete`, `$deleteFromPrimitiveList/…` are honoured and
//! `$setElementOrder/…`, `$retainKeys` are read as the order-only hints
//! they are here.

use serde_json::{Map, Value};

/// The merge key of list `field` whose elements look like `sample`, from
/// the `patchMergeKey` tags of k8s.io/api.
fn merge_key(field: &str, sample: &Value) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates" => "name",
        "ports" if sample.get("containerPort").is_some() => "containerPort",
        "ports" => "port",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "hostAliases" => "ip",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "topologySpreadConstraints" => "topologyKey",
        _ => return None,
    })
}

/// `v` without any `$…` directive keys, at any depth.
pub fn without_directives(mut v: Value) -> Value {
    match &mut v {
        Value::Object(m) => {
            m.retain(|k, _| !k.starts_with('$'));
            for x in m.values_mut() {
                *x = without_directives(x.take());
            }
        }
        Value::Array(a) => {
            for x in a.iter_mut() {
                *x = without_directives(x.take());
            }
        }
        _ => {}
    }
    v
}

fn directive(v: &Value) -> Option<&str> {
    v.get("$patch").and_then(Value::as_str)
}

/// Applies strategic merge patch `patch` to `target`.
pub fn merge(target: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        *target = without_directives(patch.clone());
        return;
    };
    if directive(patch) == Some("replace") || !target.is_object() {
        *target = without_directives(patch.clone());
        return;
    }
    let Some(t) = target.as_object_mut() else {
        return;
    };
    for (k, v) in p {
        if let Some(list) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(a), Some(gone)) =
                (t.get_mut(list).and_then(Value::as_array_mut), v.as_array())
            {
                a.retain(|x| !gone.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        match v {
            Value::Null => {
                t.remove(k);
            }
            Value::Object(_) if directive(v) == Some("delete") => {
                t.remove(k);
            }
            Value::Object(_) => merge(t.entry(k.clone()).or_insert(Value::Object(Map::new())), v),
            Value::Array(items) => merge_list(t, k, items),
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
    }
}

fn merge_list(t: &mut Map<String, Value>, field: &str, items: &[Value]) {
    let key = items.first().and_then(|s| merge_key(field, s));
    let replace = items.iter().any(|e| directive(e) == Some("replace"));
    let (Some(key), false, Some(Value::Array(current))) = (key, replace, t.get_mut(field)) else {
        let kept: Vec<Value> = items
            .iter()
            .filter(|e| directive(e).is_none())
            .map(|e| without_directives(e.clone()))
            .collect();
        t.insert(field.to_owned(), Value::Array(kept));
        return;
    };
    for e in items {
        let pos = current.iter().position(|c| c.get(key) == e.get(key));
        match (directive(e), pos) {
            (Some("delete"), Some(i)) => {
                current.remove(i);
            }
            (Some("delete"), None) => {}
            (_, Some(i)) => merge(&mut current[i], e),
            (_, None) => current.push(without_directives(e.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn set_image_keeps_the_other_fields_of_the_container() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "nginx:1", "ports": [{"containerPort": 80}]},
            {"name": "b", "image": "busybox"}]}}}});
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "a", "image": "nginx:2"}]}}}});
        super::merge(&mut d, &patch);
        let cs = &d["spec"]["template"]["spec"]["containers"];
        assert_eq!(cs[0]["image"], "nginx:2");
        assert_eq!(cs[0]["ports"][0]["containerPort"], 80);
        assert_eq!(cs[1]["image"], "busybox");
    }

    #[test]
    fn maps_merge_and_null_deletes_and_directives_apply() {
        let mut d = json!({"metadata": {"annotations": {"a": "1", "b": "2"}},
            "spec": {"args": ["x", "y"], "env": [{"name": "A", "value": "1"}, {"name": "B"}]}});
        let patch = json!({"metadata": {"annotations": {"a": null, "c": "3"}},
            "spec": {"env": [{"name": "B", "$patch": "delete"}],
                     "$deleteFromPrimitiveList/args": ["x"]}});
        super::merge(&mut d, &patch);
        assert_eq!(d["metadata"]["annotations"], json!({"b": "2", "c": "3"}));
        assert_eq!(d["spec"]["env"], json!([{"name": "A", "value": "1"}]));
        assert_eq!(d["spec"]["args"], json!(["y"]));
    }
}
