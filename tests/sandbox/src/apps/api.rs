// SPDX-License-Identifier: Apache-2.0
//! Creating and changing Deployments and ReplicaSets: validation and the
//! defaults a real server fills in, an immutable selector, and
//! `metadata.generation` bumped on every change of `spec`.

use std::sync::Arc;

use serde_json::{json, Value};

use super::selects;
use crate::admission::{self, Causes, FieldValidation};
use crate::api;
use crate::sandbox::State;
use crate::status::ApiError;
use crate::store::{Key, Resource};

/// POST deployments / replicasets.
pub fn create(
    state: &Arc<State>,
    resource: Resource,
    ns: &str,
    body: &Value,
    fv: FieldValidation,
    dry_run: bool,
) -> Result<(Value, Vec<String>), ApiError> {
    let (mut obj, warnings) = api::decode(resource, body, fv)?;
    api::check_namespace_matches(&obj, ns)?;
    api::server_owned_metadata(&mut obj, ns, resource);
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
    if let Some(m) = obj.as_object_mut() {
        m.remove("status");
    }
    admit(resource, &name, &mut obj)?;
    obj["status"] = match resource {
        Resource::ReplicaSet => json!({"replicas": 0}),
        _ => json!({}),
    };
    if dry_run {
        return Ok((obj, warnings));
    }
    crate::namespaces::open_for(state, ns, resource, &name)?;
    let created = state.lock().create(resource, obj).map_err(|e| match e {
        crate::store::StoreError::AlreadyExists => ApiError::already_exists(resource, &name),
        crate::store::StoreError::NotFound => ApiError::not_found(resource, &name),
    })?;
    Ok((created, warnings))
}

fn cause(causes: &mut Causes, field: &str, reason: &str, message: String) {
    causes.push((field.into(), reason.into(), message));
}

/// Drops `null` members, as decoding into the API's types does (kubectl
/// sends `creationTimestamp: null` in templates, e.g. on `rollout undo`).
fn prune_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(prune_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(prune_nulls),
        _ => {}
    }
}

/// Validates and defaults a Deployment or ReplicaSet (new or changed).
fn admit(resource: Resource, name: &str, obj: &mut Value) -> Result<(), ApiError> {
    prune_nulls(&mut obj["spec"]);
    let mut causes = Causes::new();
    admission::validate_name(&mut causes, &obj["metadata"], 253);
    let spec = &obj["spec"];
    let selector = &spec["selector"];
    let empty = |k: &str| {
        selector[k].as_object().is_none_or(|m| m.is_empty())
            && selector[k].as_array().is_none_or(Vec::is_empty)
    };
    if empty("matchLabels") && empty("matchExpressions") {
        cause(
            &mut causes,
            "spec.selector",
            "FieldValueRequired",
            "Required value".into(),
        );
    } else if !selects(selector, &spec["template"]["metadata"]["labels"]) {
        let labels =
            serde_json::to_string(&spec["template"]["metadata"]["labels"]).unwrap_or_default();
        cause(
            &mut causes,
            "spec.template.metadata.labels",
            "FieldValueInvalid",
            format!("Invalid value: {labels}: `selector` does not match template `labels`"),
        );
    }
    if spec["template"].is_null() {
        cause(
            &mut causes,
            "spec.template",
            "FieldValueRequired",
            "Required value".into(),
        );
    } else {
        admission::validate_pod_spec(
            &mut causes,
            &spec["template"]["spec"],
            "spec.template.spec",
            false,
        );
        if let Some(p) = spec["template"]["spec"]["restartPolicy"]
            .as_str()
            .filter(|p| *p != "Always")
        {
            cause(
                &mut causes,
                "spec.template.spec.restartPolicy",
                "FieldValueNotSupported",
                format!("Unsupported value: \"{p}\": supported values: \"Always\""),
            );
        }
    }
    for f in [
        "replicas",
        "minReadySeconds",
        "revisionHistoryLimit",
        "progressDeadlineSeconds",
    ] {
        match &spec[f] {
            Value::Null => {}
            v if v
                .as_i64()
                .is_some_and(|n| n >= 0 && n <= i64::from(i32::MAX)) => {}
            v => cause(
                &mut causes,
                &format!("spec.{f}"),
                "FieldValueInvalid",
                format!("Invalid value: {v}: must be greater than or equal to 0"),
            ),
        }
    }
    let strategy = spec["strategy"]["type"].as_str().unwrap_or("RollingUpdate");
    if resource == Resource::Deployment && strategy != "RollingUpdate" && strategy != "Recreate" {
        cause(&mut causes, "spec.strategy.type", "FieldValueNotSupported",
              format!("Unsupported value: \"{strategy}\": supported values: \"Recreate\", \"RollingUpdate\""));
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid(resource, name, &causes));
    }
    let spec = &mut obj["spec"];
    if spec["replicas"].is_null() {
        spec["replicas"] = json!(1);
    }
    admission::default_pod_spec(&mut spec["template"]["spec"]);
    if resource == Resource::Deployment {
        if spec["strategy"]["type"].is_null() {
            spec["strategy"]["type"] = json!("RollingUpdate");
        }
        if spec["strategy"]["type"] == "RollingUpdate" {
            for k in ["maxUnavailable", "maxSurge"] {
                if spec["strategy"]["rollingUpdate"][k].is_null() {
                    spec["strategy"]["rollingUpdate"][k] = json!("25%");
                }
            }
        }
        for (k, v) in [
            ("revisionHistoryLimit", 10),
            ("progressDeadlineSeconds", 600),
        ] {
            if spec[k].is_null() {
                spec[k] = json!(v);
            }
        }
    }
    Ok(())
}

/// PUT of a whole Deployment or ReplicaSet (`kubectl replace`): the spec,
/// labels and annotations as sent, from the version it names if any.
pub fn replace(
    state: &State,
    resource: Resource,
    ns: &str,
    name: &str,
    body: &Value,
    fv: FieldValidation,
) -> Result<(Value, Vec<String>), ApiError> {
    let (obj, warnings) = api::decode(resource, body, fv)?;
    api::check_namespace_matches(&obj, ns)?;
    if obj["metadata"]["name"].as_str() != Some(name) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            obj["metadata"]["name"].as_str().unwrap_or("")
        )));
    }
    let key = Key::new(resource, ns, name);
    let old = state
        .lock()
        .get(&key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(resource, name))?;
    let rv = &obj["metadata"]["resourceVersion"];
    if rv.as_str().is_some_and(|v| !v.is_empty()) && *rv != old["metadata"]["resourceVersion"] {
        return Err(ApiError::conflict(resource, name));
    }
    let mut new = old.clone();
    new["spec"] = obj["spec"].clone();
    for k in ["labels", "annotations"] {
        new["metadata"][k] = obj["metadata"][k].clone();
    }
    admit_change(resource, name, &old, &mut new)?;
    let updated = state
        .lock()
        .update(&key, |o| *o = new)
        .map_err(|_| ApiError::not_found(resource, name))?;
    Ok((updated, warnings))
}

/// What a PATCH, a PUT or a scale may change: the spec (validated and defaulted
/// again), not the selector; every change of the spec is a new generation.
pub fn admit_change(
    resource: Resource,
    name: &str,
    old: &Value,
    new: &mut Value,
) -> Result<(), ApiError> {
    if new["spec"]["selector"] != old["spec"]["selector"] {
        let sel = serde_json::to_string(&new["spec"]["selector"]).unwrap_or_default();
        return Err(ApiError::invalid(
            resource,
            name,
            &[(
                "spec.selector".into(),
                "FieldValueInvalid".into(),
                format!("Invalid value: {sel}: field is immutable"),
            )],
        ));
    }
    admit(resource, name, new)?;
    if new["spec"] != old["spec"] {
        new["metadata"]["generation"] =
            json!(old["metadata"]["generation"].as_i64().unwrap_or(1) + 1);
    }
    Ok(())
}
