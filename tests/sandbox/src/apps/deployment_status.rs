// SPDX-License-Identifier: Apache-2.0
//! A Deployment's status as `kubectl rollout status` reads it: replicas,
//! updated, ready, available, observedGeneration, and the Available and
//! Progressing conditions. Progress deadlines are not enforced.

use serde_json::{json, Value};

use super::deployments::{counts, revision, REVISION};
use crate::sandbox::State;
use crate::store::{now, Key, Resource};

/// A condition, keeping its times when nothing about it changed.
fn condition(old: &Value, ty: &str, status: bool, reason: &str, message: &str) -> Value {
    let prev = old["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == ty);
    let status = if status { "True" } else { "False" };
    let ts = now();
    let mut c = json!({"type": ty, "status": status, "reason": reason, "message": message,
                       "lastUpdateTime": ts, "lastTransitionTime": ts});
    if let Some(p) = prev {
        if p["status"] == status {
            c["lastTransitionTime"] = p["lastTransitionTime"].clone();
            if p["reason"] == reason && p["message"] == message {
                c["lastUpdateTime"] = p["lastUpdateTime"].clone();
            }
        }
    }
    c
}

pub(super) fn write(
    state: &State,
    d: &Value,
    new_rs: Option<&Value>,
    sets: &[&Value],
    pods: &[Value],
    want: i64,
    unavailable: i64,
) {
    let (mut total, mut ready) = (0, 0);
    for s in sets {
        let (a, r) = counts(s, pods);
        total += a;
        ready += r;
    }
    let updated = new_rs.map_or(0, |n| counts(n, pods).0);
    let new_name = new_rs
        .and_then(|n| n["metadata"]["name"].as_str())
        .unwrap_or("");
    let complete = updated == want && total == want && ready == want;
    let available_ok = ready >= want - unavailable;
    let progressing = if complete {
        condition(
            d,
            "Progressing",
            true,
            "NewReplicaSetAvailable",
            &format!("ReplicaSet \"{new_name}\" has successfully progressed."),
        )
    } else {
        condition(
            d,
            "Progressing",
            true,
            "ReplicaSetUpdated",
            &format!("ReplicaSet \"{new_name}\" is progressing."),
        )
    };
    let available = if available_ok {
        condition(
            d,
            "Available",
            true,
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
        )
    } else {
        condition(
            d,
            "Available",
            false,
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
        )
    };
    let mut status = json!({
        "observedGeneration": d["metadata"]["generation"],
        "replicas": total, "updatedReplicas": updated, "readyReplicas": ready,
        "availableReplicas": ready, "unavailableReplicas": (want - ready).max(0),
        "conditions": [available, progressing],
    });
    // All counters are `omitempty`.
    if let Some(s) = status.as_object_mut() {
        s.retain(|_, v| *v != json!(0));
    }
    let revision = new_rs.map(revision);
    let ns = d["metadata"]["namespace"].as_str().unwrap_or("");
    let name = d["metadata"]["name"].as_str().unwrap_or("");
    let _ = state
        .lock()
        .update(&Key::new(Resource::Deployment, ns, name), |d| {
            // A spec changed since this pass read it is the next pass's.
            if d["metadata"]["generation"] == status["observedGeneration"] {
                d["status"] = status;
            }
            if let Some(r) = revision {
                d["metadata"]["annotations"][REVISION] = json!(r.to_string());
            }
        });
}
