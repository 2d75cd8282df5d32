// SPDX-License-Identifier: Apache-2.0
//! The ReplicaSet controller: keeps `spec.replicas` active pods made from
//! the template (named `RS-<5 chars>`, owned by the ReplicaSet), deleting
//! the surplus least-ready and newest first, and reports the counts in
//! `status`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{controlled_by, controller_ref, is_active, is_deleting, is_ready, replicas};
use crate::api;
use crate::objects::event_for;
use crate::sandbox::State;
use crate::store::{random_suffix, Key, Resource};

const CONTROLLER: &str = "replicaset-controller";

/// What the controller remembers between passes.
#[derive(Default)]
pub struct Memory {
    /// ReplicaSet uid → when to retry a refused pod creation, and the back-off.
    retry: HashMap<String, (Instant, Duration)>,
}

pub fn reconcile(state: &Arc<State>, memory: &mut Memory) {
    let (sets, pods) = {
        let st = state.lock();
        (
            st.list(Resource::ReplicaSet, None),
            st.list(Resource::Pod, None),
        )
    };
    memory
        .retry
        .retain(|uid, _| sets.iter().any(|s| s["metadata"]["uid"] == *uid));
    for rs in sets.iter().filter(|s| !is_deleting(s)) {
        let adopted = super::adopt(state, Resource::Pod, rs, &pods);
        let mine: Vec<&Value> = pods
            .iter()
            .filter(|p| controlled_by(p, rs))
            .chain(&adopted)
            .collect();
        reconcile_one(state, rs, &mine, memory);
    }
}

fn reconcile_one(state: &Arc<State>, rs: &Value, pods: &[&Value], memory: &mut Memory) {
    let ns = rs["metadata"]["namespace"].as_str().unwrap_or("");
    let name = rs["metadata"]["name"].as_str().unwrap_or("");
    let uid = rs["metadata"]["uid"].as_str().unwrap_or("").to_owned();
    let key = Key::new(Resource::ReplicaSet, ns, name);
    let mut active: Vec<&Value> = pods.iter().copied().filter(|p| is_active(p)).collect();
    let want = replicas(rs).max(0) as usize;
    if active.len() < want {
        let due = memory
            .retry
            .get(&uid)
            .is_none_or(|(at, _)| Instant::now() >= *at);
        for _ in active.len()..want {
            if !due {
                break;
            }
            match create_pod(state, rs) {
                Ok(pod) => {
                    memory.retry.remove(&uid);
                    let msg = format!("Created pod: {pod}");
                    event_for(
                        &mut state.lock(),
                        &key,
                        "Normal",
                        "SuccessfulCreate",
                        &msg,
                        CONTROLLER,
                        None,
                    );
                }
                Err(why) => {
                    let delay = memory
                        .retry
                        .get(&uid)
                        .map_or(Duration::from_secs(1), |(_, d)| {
                            (*d * 2).min(Duration::from_secs(30))
                        });
                    memory
                        .retry
                        .insert(uid.clone(), (Instant::now() + delay, delay));
                    let msg = format!("Error creating: {why}");
                    event_for(
                        &mut state.lock(),
                        &key,
                        "Warning",
                        "FailedCreate",
                        &msg,
                        CONTROLLER,
                        None,
                    );
                    break;
                }
            }
        }
    } else if active.len() > want {
        // The real controller's ranking: unscheduled before scheduled,
        // pending before running, not ready before ready, newer before older.
        active.sort_by_key(|p| {
            (
                p["spec"]["nodeName"].is_string(),
                p["status"]["phase"] == "Running",
                is_ready(p),
                std::cmp::Reverse(
                    p["metadata"]["creationTimestamp"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                ),
            )
        });
        for p in active.drain(..active.len() - want) {
            let pod = p["metadata"]["name"].as_str().unwrap_or("");
            if api::delete_pod(state, ns, pod, None).is_ok() {
                let msg = format!("Deleted pod: {pod}");
                event_for(
                    &mut state.lock(),
                    &key,
                    "Normal",
                    "SuccessfulDelete",
                    &msg,
                    CONTROLLER,
                    None,
                );
            }
        }
    }
    let ready = active.iter().filter(|p| is_ready(p)).count();
    let generation = rs["metadata"]["generation"].clone();
    let _ = state.lock().update(&key, |rs| {
        let mut status = json!({
            "replicas": active.len(), "fullyLabeledReplicas": active.len(),
            "readyReplicas": ready, "availableReplicas": ready,
            "observedGeneration": generation,
        });
        // Zero counters are `omitempty` (all but `replicas`).
        if let Some(s) = status.as_object_mut() {
            s.retain(|k, v| k == "replicas" || *v != json!(0));
        }
        rs["status"] = status;
    });
}

/// Creates one pod from the ReplicaSet's template; `Err` is the API's refusal.
fn create_pod(state: &Arc<State>, rs: &Value) -> Result<String, String> {
    let name = rs["metadata"]["name"].as_str().unwrap_or("");
    let ns = rs["metadata"]["namespace"].as_str().unwrap_or("");
    let template = &rs["spec"]["template"];
    let pod_name = format!("{name}-{}", random_suffix());
    let mut meta = template["metadata"].clone();
    if !meta.is_object() {
        meta = json!({});
    }
    meta["name"] = json!(pod_name);
    meta["generateName"] = json!(format!("{name}-"));
    meta["namespace"] = json!(ns);
    meta["ownerReferences"] = json!([controller_ref(rs)]);
    let pod =
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]});
    api::create_pod(state, pod).map_err(|e| e.message)?;
    Ok(pod_name)
}
