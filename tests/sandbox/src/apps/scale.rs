// SPDX-License-Identifier: Apache-2.0
//! The `scale` subresource of Deployments and ReplicaSets: an
//! `autoscaling/v1` `Scale` to GET, PATCH (as `kubectl scale` does) or PUT
//! (with `--resource-version` or `--current-replicas`).

use serde_json::{json, Value};

use super::selector_string;
use crate::sandbox::State;
use crate::status::ApiError;
use crate::store::{Key, Resource};

/// The object's `Scale`.
fn scale_of(obj: &Value) -> Value {
    let m = &obj["metadata"];
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
                     "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"]},
        "spec": {"replicas": super::replicas(obj)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0),
                   "selector": selector_string(&obj["spec"]["selector"])},
    })
}

/// GET, PATCH or PUT (`verb`: get, patch, update) of `resource`'s scale.
pub fn handle(
    state: &State,
    verb: &str,
    resource: Resource,
    ns: &str,
    name: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    if !matches!(resource, Resource::Deployment | Resource::ReplicaSet) {
        return Err(ApiError::not_found_path());
    }
    let key = Key::new(resource, ns, name);
    let obj = state
        .lock()
        .get(&key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(resource, name))?;
    let current = scale_of(&obj);
    let wanted = match verb {
        "get" => return Ok(current),
        "patch" => {
            let mut s = current.clone();
            crate::patch::apply(&mut s, content_type, body)?;
            s
        }
        "update" => {
            let s: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding Scale: {e}")))?;
            let rv = s["metadata"]["resourceVersion"].as_str().unwrap_or("");
            if !rv.is_empty()
                && s["metadata"]["resourceVersion"] != obj["metadata"]["resourceVersion"]
            {
                return Err(ApiError::conflict(resource, name));
            }
            s
        }
        _ => return Err(ApiError::method_not_allowed()),
    };
    let replicas = match &wanted["spec"]["replicas"] {
        Value::Null => 0,
        v => v
            .as_i64()
            .filter(|n| (0..=i64::from(i32::MAX)).contains(n))
            .ok_or_else(|| {
                ApiError::invalid(
                    resource,
                    name,
                    &[(
                        "spec.replicas".into(),
                        "FieldValueInvalid".into(),
                        format!("Invalid value: {v}: must be greater than or equal to 0"),
                    )],
                )
            })?,
    };
    let updated = state
        .lock()
        .update(&key, |o| {
            if super::replicas(o) != replicas {
                o["spec"]["replicas"] = json!(replicas);
                o["metadata"]["generation"] =
                    json!(o["metadata"]["generation"].as_i64().unwrap_or(1) + 1);
            }
        })
        .map_err(|_| ApiError::not_found(resource, name))?;
    Ok(scale_of(&updated))
}
