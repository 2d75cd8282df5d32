// SPDX-License-Identifier: Apache-2.0
//! The garbage collector, for every kind that owns another here (Job →
//! Pod, Deployment → ReplicaSet → Pod): a dependent all of whose owners are
//! gone is deleted (background propagation, and the pod a controller made
//! from a stale view just after its owner went); an owner deleted in the
//! foreground goes once its dependents have; orphaning strips the owner
//! references.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::api::{self, Propagation};
use crate::sandbox::State;
use crate::status::ApiError;
use crate::store::{now, Key, Resource};

/// What may have owners here, dependents before their owners' kinds.
const DEPENDENTS: [Resource; 2] = [Resource::Pod, Resource::ReplicaSet];

/// What may own others here.
const OWNERS: [Resource; 3] = [Resource::Job, Resource::Deployment, Resource::ReplicaSet];

/// Runs until aborted, sweeping after every change.
pub async fn run(state: Arc<State>) {
    state.run_controller(|state| sweep(state)).await;
}

/// The served resource an owner reference names, if any.
fn owner_resource(owner: &Value) -> Option<Resource> {
    OWNERS
        .into_iter()
        .find(|r| owner["kind"] == r.kind() && owner["apiVersion"] == r.api_version())
}

fn name_of(o: &Value) -> (&str, &str) {
    (
        o["metadata"]["namespace"].as_str().unwrap_or(""),
        o["metadata"]["name"].as_str().unwrap_or(""),
    )
}

fn is_deleting(o: &Value) -> bool {
    !o["metadata"]["deletionTimestamp"].is_null()
}

/// Whether `o` names `uid` among its owners.
pub fn owned_by(o: &Value, uid: &Value) -> bool {
    o["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["uid"] == *uid)
}

fn sweep(state: &State) {
    // One lock for both lists: an owner is stored before its dependents,
    // so a dependent whose owner is missing here really has lost it.
    let (dependents, live, foreground) = {
        let st = state.lock();
        let dependents: Vec<(Resource, Value)> = DEPENDENTS
            .into_iter()
            .flat_map(|r| st.list(r, None).into_iter().map(move |o| (r, o)))
            .collect();
        let owners: Vec<(Resource, Value)> = OWNERS
            .into_iter()
            .flat_map(|r| st.list(r, None).into_iter().map(move |o| (r, o)))
            .collect();
        let live: HashSet<String> = owners
            .iter()
            .filter_map(|(_, o)| o["metadata"]["uid"].as_str().map(str::to_owned))
            .collect();
        let foreground: Vec<(Resource, Value)> = owners
            .into_iter()
            .filter(|(_, o)| {
                o["metadata"]["finalizers"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|f| f == "foregroundDeletion"))
            })
            .collect();
        (dependents, live, foreground)
    };
    for (resource, o) in &dependents {
        let Some(owners) = o["metadata"]["ownerReferences"]
            .as_array()
            .filter(|o| !o.is_empty())
        else {
            continue;
        };
        let dangling = owners.iter().all(|r| {
            owner_resource(r).is_some() && !r["uid"].as_str().is_some_and(|u| live.contains(u))
        });
        if dangling && !is_deleting(o) {
            let (ns, name) = name_of(o);
            tracing::debug!(
                kind = resource.kind(),
                name,
                "collecting an object whose owner is gone"
            );
            let _ = delete_dependent(state, *resource, ns, name, Propagation::Background);
        }
    }
    for (resource, owner) in foreground {
        let uid = &owner["metadata"]["uid"];
        let left: Vec<&(Resource, Value)> = dependents
            .iter()
            .filter(|(_, d)| owned_by(d, uid))
            .collect();
        for (r, d) in &left {
            if !is_deleting(d) {
                let (ns, name) = name_of(d);
                let _ = delete_dependent(state, *r, ns, name, Propagation::Foreground);
            }
        }
        if left.is_empty() {
            let (ns, name) = name_of(&owner);
            let _ = state.lock().remove(&Key::new(resource, ns, name));
        }
    }
}

/// Deletes a dependent: in the foreground when its owner waits for it
/// (so the owner goes last of all), as the real collector does.
fn delete_dependent(
    state: &State,
    resource: Resource,
    ns: &str,
    name: &str,
    policy: Propagation,
) -> Result<(), ApiError> {
    match resource {
        Resource::Pod => api::delete_pod(state, ns, name, None).map(drop),
        r => delete(state, r, ns, name, policy).map(drop),
    }
}

/// DELETE of an object whose dependents this collector looks after (a
/// Job, a Deployment, a ReplicaSet): `(status code, body)` as a real server
/// answers — 200 with the object gone, 202 when the foreground deletion
/// still waits for dependents.
pub fn delete(
    state: &State,
    resource: Resource,
    ns: &str,
    name: &str,
    policy: Propagation,
) -> Result<(u16, Value), ApiError> {
    let key = Key::new(resource, ns, name);
    let not_found = |_| ApiError::not_found(resource, name);
    let obj = state
        .lock()
        .get(&key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(resource, name))?;
    let uid = obj["metadata"]["uid"].clone();
    match policy {
        Propagation::Background => Ok((200, state.lock().remove(&key).map_err(not_found)?)),
        Propagation::Orphan => {
            let removed = state.lock().remove(&key).map_err(not_found)?;
            let mut st = state.lock();
            for r in DEPENDENTS {
                for d in st.list(r, Some(ns)) {
                    if !owned_by(&d, &uid) {
                        continue;
                    }
                    let dkey = Key::new(r, ns, name_of(&d).1);
                    let _ = st.update(&dkey, |d| {
                        let meta = &mut d["metadata"];
                        if let Some(refs) = meta["ownerReferences"].as_array_mut() {
                            refs.retain(|r| r["uid"] != uid);
                        }
                        if meta["ownerReferences"]
                            .as_array()
                            .is_some_and(Vec::is_empty)
                        {
                            if let Some(m) = meta.as_object_mut() {
                                m.remove("ownerReferences");
                            }
                        }
                    });
                }
            }
            Ok((200, removed))
        }
        Propagation::Foreground => {
            let marked = state
                .lock()
                .update(&key, |o| {
                    if o["metadata"]["deletionTimestamp"].is_null() {
                        o["metadata"]["deletionTimestamp"] = json!(now());
                        o["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                        o["metadata"]["finalizers"] = json!(["foregroundDeletion"]);
                    }
                })
                .map_err(not_found)?;
            Ok((202, marked))
        }
    }
}
