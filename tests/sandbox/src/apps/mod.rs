// SPDX-License-Identifier: Apache-2.0
//! `apps/v1` Deployments and ReplicaSets: their REST side (`api`, `scale`,
//! `protobuf`, `table`) and their controllers (`deployments`,
//! `replicasets`), which behave as the real ones where `kubectl rollout`,
//! `kubectl scale` and our plugin look: ReplicaSets named
//! `DEPLOYMENT-<pod-template-hash>`, pods `REPLICASET-<5 chars>`, owner
//! references with `controller: true`, rolling updates within
//! maxSurge/maxUnavailable, and the status fields `kubectl rollout status`
//! reads. Dependents of deleted objects are the garbage collector's (`gc`).

pub mod api;
mod deployment_status;
mod deployments;
pub mod protobuf;
mod replicasets;
pub mod scale;
pub mod table;

use std::sync::Arc;

use serde_json::{json, Value};

use crate::objects::pod_is_ready as is_ready;
use crate::sandbox::State;
use crate::store::{Key, Resource};

/// The label a Deployment adds to its ReplicaSets' selectors and pods.
pub const HASH_LABEL: &str = "pod-template-hash";

/// Runs both controllers until aborted, ReplicaSets after Deployments so a
/// scaled ReplicaSet gets its pods in the same pass.
pub async fn run(state: Arc<State>) {
    let mut rs = replicasets::Memory::default();
    state
        .run_controller(|state| {
            deployments::reconcile(state);
            replicasets::reconcile(state, &mut rs);
        })
        .await;
}

/// An owner reference to `owner` as its controller.
fn controller_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"], "kind": owner["kind"],
        "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
        "controller": true, "blockOwnerDeletion": true,
    })
}

/// Whether `owner` is `o`'s controller.
fn controlled_by(o: &Value, owner: &Value) -> bool {
    o["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["controller"] == json!(true) && r["uid"] == owner["metadata"]["uid"])
}

/// Objects in `owner`'s namespace with no controller that its selector
/// selects become its own, as the real controllers adopt them (say, after
/// a `--cascade=orphan` deletion and a re-create). Returns them, updated.
fn adopt(state: &State, resource: Resource, owner: &Value, candidates: &[Value]) -> Vec<Value> {
    let ns = owner["metadata"]["namespace"].as_str().unwrap_or("");
    let orphans = candidates.iter().filter(|o| {
        o["metadata"]["namespace"] == ns
            && !is_deleting(o)
            && (resource != Resource::Pod || is_active(o))
            && !o["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r["controller"] == json!(true))
            && selects(&owner["spec"]["selector"], &o["metadata"]["labels"])
    });
    let mut st = state.lock();
    orphans
        .filter_map(|o| {
            let key = Key::new(resource, ns, o["metadata"]["name"].as_str().unwrap_or(""));
            st.update(&key, |o| {
                let mut refs = o["metadata"]["ownerReferences"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                refs.push(controller_ref(owner));
                o["metadata"]["ownerReferences"] = json!(refs);
            })
            .ok()
        })
        .collect()
}

fn is_deleting(o: &Value) -> bool {
    !o["metadata"]["deletionTimestamp"].is_null()
}

/// A pod that counts towards its ReplicaSet: neither ended nor deleting.
fn is_active(pod: &Value) -> bool {
    !is_deleting(pod)
        && !matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        )
}

fn replicas(o: &Value) -> i64 {
    o["spec"]["replicas"].as_i64().unwrap_or(1)
}

/// A `metav1.LabelSelector` as the query-string form (`a=b,c in (d)`).
pub fn selector_string(sel: &Value) -> String {
    let mut parts: Vec<String> = sel["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = e["key"].as_str().unwrap_or("");
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match e["operator"].as_str().unwrap_or("") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "DoesNotExist" => format!("!{key}"),
            _ => key.to_owned(),
        });
    }
    parts.join(",")
}

/// Whether a `metav1.LabelSelector` selects `labels`.
fn selects(sel: &Value, labels: &Value) -> bool {
    crate::selectors::LabelSelector::parse(&selector_string(sel)).is_ok_and(|s| s.matches(labels))
}

/// The `pod-template-hash` of a pod template, as the real controller
/// computes it: FNV-1a (32 bit) of the template, its decimal digits mapped
/// onto the alphabet of generated names.
fn template_hash(template: &Value) -> String {
    let text = serde_json::to_string(template).unwrap_or_default();
    let mut h: u32 = 0x811c_9dc5;
    for b in text.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn selectors_round_trip_through_the_query_form() {
        let sel = json!({"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]});
        assert_eq!(super::selector_string(&sel), "app=web,tier in (a,b)");
        assert!(super::selects(&sel, &json!({"app": "web", "tier": "b"})));
        assert!(!super::selects(&sel, &json!({"app": "web"})));
    }

    #[test]
    fn template_hashes_are_stable_and_differ_by_template() {
        let a = json!({"spec": {"containers": [{"name": "n", "image": "nginx"}]}});
        let b = json!({"spec": {"containers": [{"name": "n", "image": "nginx:1"}]}});
        assert_eq!(super::template_hash(&a), super::template_hash(&a.clone()));
        assert_ne!(super::template_hash(&a), super::template_hash(&b));
        assert!(super::template_hash(&a)
            .bytes()
            .all(|c| b"bcdfghjklmnpqrstvwxz2456789".contains(&c)));
    }
}
