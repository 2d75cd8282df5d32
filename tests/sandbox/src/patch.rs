// SPDX-License-Identifier: Apache-2.0
//! PATCH, as `kubectl apply`, `label`, `annotate`, `set image` and
//! `rollout restart` send it to an object that exists: JSON patch (RFC
//! 6902), merge patch (RFC 7386) and strategic merge patch (`strategic`).
//! What a patch may change is what a real server lets change:
//! metadata (labels, annotations) of all three kinds; a Namespace's spec
//! and every status are the server's own; a Pod's spec is refused (the
//! sandbox refuses even the image changes a real server allows, as its
//! kubelet would not act on them); a Job's template and selector are
//! immutable; a Deployment's or ReplicaSet's spec may change but not its
//! selector, and each change is a new `metadata.generation`.

use serde_json::Value;

use crate::admission::FieldValidation;
use crate::api;
use crate::sandbox::State;
use crate::status::ApiError;
use crate::store::{Key, Resource};

/// The patch types served (server-side apply's `apply-patch+yaml` is not).
const PATCH_TYPES: &str = "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json";

/// PATCH `resource` `ns`/`name` with `body` of `content_type`.
pub fn patch(
    state: &State,
    resource: Resource,
    ns: &str,
    name: &str,
    content_type: &str,
    body: &[u8],
    fv: FieldValidation,
) -> Result<(Value, Vec<String>), ApiError> {
    let key = Key::new(resource, ns, name);
    let old = state
        .lock()
        .get(&key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(resource, name))?;
    let mut new = old.clone();
    apply(&mut new, content_type, body)?;
    // Only what the patch brought in is checked: the stored object is the
    // server's own.
    let before = api::unknown_fields(resource, &old)?;
    let unknown: Vec<String> = api::unknown_fields(resource, &new)?
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    let (mut new, warnings) = api::validate_fields(resource, new, &unknown, fv)?;
    if new["metadata"]["name"] != old["metadata"]["name"] {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            new["metadata"]["name"].as_str().unwrap_or("")
        )));
    }
    keep_server_owned(resource, name, &old, &mut new)?;
    let updated = state
        .lock()
        .update(&key, |o| *o = new)
        .map_err(|_| ApiError::not_found(resource, name))?;
    Ok((updated, warnings))
}

/// Applies a patch `body` of `content_type` to `target`.
pub fn apply(target: &mut Value, content_type: &str, body: &[u8]) -> Result<(), ApiError> {
    let parse = || {
        serde_json::from_slice::<Value>(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
    };
    match content_type.split(';').next().unwrap_or("").trim() {
        "application/json-patch+json" => {
            let ops: json_patch::Patch = serde_json::from_value(parse()?)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::patch(target, &ops).map_err(|e| {
                ApiError::unprocessable(format!("the patch could not be applied: {e}"))
            })?;
        }
        "application/merge-patch+json" => json_patch::merge(target, &parse()?),
        "application/strategic-merge-patch+json" => crate::strategic::merge(target, &parse()?),
        _ => return Err(ApiError::unsupported_media_type(PATCH_TYPES)),
    }
    Ok(())
}

fn keep_server_owned(
    resource: Resource,
    name: &str,
    old: &Value,
    new: &mut Value,
) -> Result<(), ApiError> {
    let mut meta = old["metadata"].clone();
    for k in ["labels", "annotations"] {
        match &new["metadata"][k] {
            Value::Null => {
                if let Some(m) = meta.as_object_mut() {
                    m.remove(k);
                }
            }
            v => meta[k] = v.clone(),
        }
    }
    new["metadata"] = meta;
    new["apiVersion"] = old["apiVersion"].clone();
    new["kind"] = old["kind"].clone();
    new["status"] = old["status"].clone();
    match resource {
        Resource::Namespace => {
            new["spec"] = old["spec"].clone();
            crate::admission::set_namespace_defaults(new);
        }
        Resource::Pod if new["spec"] != old["spec"] => {
            return Err(ApiError::invalid(
                resource,
                name,
                &[(
                    "spec".into(),
                    "FieldValueForbidden".into(),
                    "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)".into(),
                )],
            ));
        }
        Resource::NetworkPolicy => crate::netpol::api::admit_change(name, old, new)?,
        Resource::Deployment | Resource::ReplicaSet => {
            crate::apps::api::admit_change(resource, name, old, new)?
        }
        Resource::Service => crate::services::api::admit_change(name, old, new)?,
        Resource::Job => {
            for f in ["template", "selector"] {
                if new["spec"][f] != old["spec"][f] {
                    return Err(ApiError::invalid(
                        resource,
                        name,
                        &[(
                            format!("spec.{f}"),
                            "FieldValueInvalid".into(),
                            "Invalid value: field is immutable".into(),
                        )],
                    ));
                }
            }
        }
        _ => {}
    }
    Ok(())
}
