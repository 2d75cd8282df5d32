// SPDX-License-Identifier: Apache-2.0
//! Namespaces as a real server keeps them: created `Active` (with the
//! `kubernetes.io/metadata.name` label), deleted by turning `Terminating`
//! while the namespace controller deletes everything in them, then purged.
//! Nothing new may be created in a namespace that is terminating.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::admission::{self, FieldValidation};
use crate::api::{self, Propagation};
use crate::sandbox::State;
use crate::status::ApiError;
use crate::store::{now, Key, Resource, StoreError};

/// The namespaces a real server refuses to delete (NamespaceLifecycle).
const IMMORTAL: [&str; 3] = ["default", "kube-system", "kube-public"];

/// What lives in a namespace and goes with it.
const CONTENT: [Resource; 7] = [
    Resource::Deployment,
    Resource::ReplicaSet,
    Resource::Job,
    Resource::Pod,
    Resource::Service,
    Resource::EndpointSlice,
    Resource::Event,
];

/// POST namespaces.
pub fn create(
    state: &State,
    body: &Value,
    fv: FieldValidation,
) -> Result<(Value, Vec<String>), ApiError> {
    let (mut ns, warnings) = api::decode(Resource::Namespace, body, fv)?;
    api::server_owned_metadata(&mut ns, "", Resource::Namespace);
    admission::admit_namespace(&mut ns)?;
    let name = ns["metadata"]["name"].as_str().unwrap_or("").to_owned();
    let created = state
        .lock()
        .create(Resource::Namespace, ns)
        .map_err(|_| ApiError::already_exists(Resource::Namespace, &name))?;
    Ok((created, warnings))
}

/// The namespace `ns`, if objects may be created in it: `namespaces "x"
/// not found` or, while it terminates, Forbidden, worded as a real server's
/// NamespaceLifecycle admission words them.
pub fn open_for(
    state: &State,
    ns: &str,
    resource: Resource,
    name: &str,
) -> Result<Value, ApiError> {
    let obj = state
        .lock()
        .get(&Key::new(Resource::Namespace, "", ns))
        .cloned()
        .ok_or_else(|| ApiError::not_found(Resource::Namespace, ns))?;
    if !obj["metadata"]["deletionTimestamp"].is_null() {
        return Err(ApiError::admission_forbidden(
            resource,
            name,
            &format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        ));
    }
    Ok(obj)
}

/// DELETE namespaces/NAME: the namespace turns `Terminating`; the
/// controller ([`run`]) empties and then removes it. A second delete
/// answers the terminating object again, as a real server does.
pub fn delete(state: &State, name: &str) -> Result<Value, ApiError> {
    if IMMORTAL.contains(&name) {
        return Err(ApiError::admission_forbidden(
            Resource::Namespace,
            name,
            "this namespace may not be deleted",
        ));
    }
    state
        .lock()
        .update(&Key::new(Resource::Namespace, "", name), |ns| {
            if ns["metadata"]["deletionTimestamp"].is_null() {
                ns["metadata"]["deletionTimestamp"] = json!(now());
                ns["status"]["phase"] = json!("Terminating");
            }
        })
        .map_err(|e| match e {
            StoreError::NotFound | StoreError::AlreadyExists => {
                ApiError::not_found(Resource::Namespace, name)
            }
        })
}

/// The namespace controller: deletes the content of every terminating
/// namespace (Jobs with their pods, pods gracefully, the rest at once) and
/// removes the namespace once nothing is left in it.
pub async fn run(state: Arc<State>) {
    state.run_controller(|state| reconcile(state)).await;
}

fn reconcile(state: &State) {
    let terminating: Vec<String> = state
        .lock()
        .list(Resource::Namespace, None)
        .into_iter()
        .filter(|ns| !ns["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|ns| ns["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    for ns in terminating {
        let mut left = 0;
        for resource in CONTENT {
            let objects = state.lock().list(resource, Some(&ns));
            left += objects.len();
            for o in objects {
                let name = o["metadata"]["name"].as_str().unwrap_or("");
                let _ = match resource {
                    Resource::Job => api::delete_job(state, &ns, name, Propagation::Background),
                    Resource::Pod if o["metadata"]["deletionTimestamp"].is_null() => {
                        api::delete_pod(state, &ns, name, None)
                    }
                    Resource::Pod => continue,
                    _ => state
                        .lock()
                        .remove(&Key::new(resource, &ns, name))
                        .map_err(|_| ApiError::not_found(resource, name)),
                };
            }
        }
        if left == 0 {
            let _ = state.lock().remove(&Key::new(Resource::Namespace, "", &ns));
        }
    }
}
