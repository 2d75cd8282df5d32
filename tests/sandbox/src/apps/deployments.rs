// SPDX-License-Identifier: Apache-2.0
//! The Deployment controller: one ReplicaSet per pod template
//! (`DEPLOYMENT-<pod-template-hash>`), the newest scaled up and the older
//! ones down within maxSurge/maxUnavailable (or all at once for
//! `Recreate`), old ReplicaSets beyond `revisionHistoryLimit` deleted, and
//! the status `kubectl rollout status` reads (`deployment_status`).

use std::sync::Arc;

use serde_json::{json, Value};

use super::{controlled_by, controller_ref, is_active, is_deleting, is_ready, replicas};
use super::{template_hash, HASH_LABEL};
use crate::objects::event_for;
use crate::sandbox::State;
use crate::store::{Key, Resource};

const CONTROLLER: &str = "deployment-controller";
pub(super) const REVISION: &str = "deployment.kubernetes.io/revision";

pub fn reconcile(state: &Arc<State>) {
    let (deployments, sets, pods) = {
        let st = state.lock();
        (
            st.list(Resource::Deployment, None),
            st.list(Resource::ReplicaSet, None),
            st.list(Resource::Pod, None),
        )
    };
    for d in deployments.iter().filter(|d| !is_deleting(d)) {
        let adopted = super::adopt(state, Resource::ReplicaSet, d, &sets);
        let mine: Vec<&Value> = sets
            .iter()
            .filter(|s| controlled_by(s, d))
            .chain(&adopted)
            .collect();
        reconcile_one(state, d, &mine, &pods);
    }
}

/// A template without the hash label, to compare with a Deployment's.
fn without_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t["metadata"]["labels"].as_object_mut() {
        labels.remove(HASH_LABEL);
        if labels.is_empty() {
            if let Some(m) = t["metadata"].as_object_mut() {
                m.remove("labels");
            }
        }
    }
    t
}

/// `25%` or `1` of `total`, rounded up (surge) or down (unavailable).
fn resolve(v: &Value, total: i64, round_up: bool) -> i64 {
    match (v.as_i64(), v.as_str().and_then(|s| s.strip_suffix('%'))) {
        (Some(n), _) => n,
        (None, Some(p)) => {
            let p: i64 = p.parse().unwrap_or(25);
            if round_up {
                (total * p + 99) / 100
            } else {
                total * p / 100
            }
        }
        _ => 0,
    }
}

/// How many pods a Deployment wants, and how far a rollout may stray.
#[derive(Clone, Copy)]
struct Limits {
    want: i64,
    surge: i64,
    unavailable: i64,
}

/// (maxSurge, maxUnavailable) as the real controller resolves them.
fn surge_and_unavailable(d: &Value) -> (i64, i64) {
    let ru = &d["spec"]["strategy"]["rollingUpdate"];
    let total = replicas(d);
    let surge = resolve(&ru["maxSurge"], total, true);
    let unavailable = resolve(&ru["maxUnavailable"], total, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

pub(super) fn revision(o: &Value) -> i64 {
    o["metadata"]["annotations"][REVISION]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// Per ReplicaSet: its active pods and how many of them are ready.
pub(super) fn counts(rs: &Value, pods: &[Value]) -> (i64, i64) {
    let active: Vec<&Value> = pods
        .iter()
        .filter(|p| controlled_by(p, rs) && is_active(p))
        .collect();
    let ready = active.iter().filter(|p| is_ready(p)).count();
    (active.len() as i64, ready as i64)
}

fn scale(state: &State, d: &Value, rs: &Value, to: i64) {
    let from = replicas(rs);
    if from == to {
        return;
    }
    let ns = rs["metadata"]["namespace"].as_str().unwrap_or("");
    let name = rs["metadata"]["name"].as_str().unwrap_or("");
    let key = Key::new(Resource::ReplicaSet, ns, name);
    let mut st = state.lock();
    let done = st.update(&key, |rs| {
        rs["spec"]["replicas"] = json!(to);
        rs["metadata"]["generation"] =
            json!(rs["metadata"]["generation"].as_i64().unwrap_or(1) + 1);
        rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] =
            json!(replicas(d).to_string());
    });
    if done.is_ok() {
        let dir = if to > from { "up" } else { "down" };
        let msg = format!("Scaled {dir} replica set {name} from {from} to {to}");
        let dkey = Key::new(
            Resource::Deployment,
            ns,
            d["metadata"]["name"].as_str().unwrap_or(""),
        );
        event_for(
            &mut st,
            &dkey,
            "Normal",
            "ScalingReplicaSet",
            &msg,
            CONTROLLER,
            None,
        );
    }
}

fn create_rs(state: &State, d: &Value, hash: &str, revision: i64, replicas: i64) -> Option<Value> {
    let ns = d["metadata"]["namespace"].as_str().unwrap_or("");
    let name = format!("{}-{hash}", d["metadata"]["name"].as_str().unwrap_or(""));
    let mut template = d["spec"]["template"].clone();
    template["metadata"]["labels"][HASH_LABEL] = json!(hash);
    let mut selector = d["spec"]["selector"].clone();
    selector["matchLabels"][HASH_LABEL] = json!(hash);
    let rs = json!({
        "metadata": {
            "name": name, "namespace": ns, "labels": template["metadata"]["labels"],
            "annotations": {
                "deployment.kubernetes.io/desired-replicas": super::replicas(d).to_string(),
                "deployment.kubernetes.io/max-replicas": (super::replicas(d) + surge_and_unavailable(d).0).to_string(),
                REVISION: revision.to_string(),
            },
            "ownerReferences": [controller_ref(d)],
        },
        "spec": {"replicas": replicas, "minReadySeconds": d["spec"]["minReadySeconds"].as_i64().unwrap_or(0),
                 "selector": selector, "template": template},
        "status": {"replicas": 0},
    });
    let mut st = state.lock();
    let created = st.create(Resource::ReplicaSet, rs).ok()?;
    let dkey = Key::new(
        Resource::Deployment,
        ns,
        d["metadata"]["name"].as_str().unwrap_or(""),
    );
    let msg = format!("Scaled up replica set {name} from 0 to {replicas}");
    event_for(
        &mut st,
        &dkey,
        "Normal",
        "ScalingReplicaSet",
        &msg,
        CONTROLLER,
        None,
    );
    Some(created)
}

fn reconcile_one(state: &Arc<State>, d: &Value, sets: &[&Value], pods: &[Value]) {
    let template = &d["spec"]["template"];
    let want = replicas(d).max(0);
    let (surge, unavailable) = surge_and_unavailable(d);
    let recreate = d["spec"]["strategy"]["type"] == "Recreate";
    let max_revision = sets.iter().map(|s| revision(s)).max().unwrap_or(0);
    let mut new_rs = sets
        .iter()
        .find(|s| without_hash(&s["spec"]["template"]) == *template)
        .map(|s| (*s).clone());
    let old: Vec<&Value> = sets
        .iter()
        .copied()
        .filter(|s| Some(&s["metadata"]["uid"]) != new_rs.as_ref().map(|n| &n["metadata"]["uid"]))
        .collect();
    let old_pods: i64 = old.iter().map(|s| counts(s, pods).0).sum();
    let old_any = old_pods > 0 || old.iter().any(|s| replicas(s) > 0);
    let paused = d["spec"]["paused"] == json!(true);
    if new_rs.is_none() && !paused {
        let start = if recreate && old_any {
            0
        } else {
            let current: i64 = old.iter().map(|s| replicas(s)).sum();
            (want + surge - current).clamp(0, want)
        };
        new_rs = create_rs(state, d, &template_hash(template), max_revision + 1, start);
    }
    if let Some(n) = new_rs.as_ref().filter(|_| !paused) {
        if revision(n) < max_revision {
            let key = Key::new(
                Resource::ReplicaSet,
                n["metadata"]["namespace"].as_str().unwrap_or(""),
                n["metadata"]["name"].as_str().unwrap_or(""),
            );
            let _ = state.lock().update(&key, |rs| {
                rs["metadata"]["annotations"][REVISION] = json!((max_revision + 1).to_string());
            });
        }
        if recreate {
            for s in &old {
                scale(state, d, s, 0);
            }
            if old_pods == 0 {
                scale(state, d, n, want);
            }
        } else if !old.iter().any(|s| replicas(s) > 0) {
            scale(state, d, n, want);
        } else {
            let limits = Limits {
                want,
                surge,
                unavailable,
            };
            roll(state, d, n, &old, pods, limits);
        }
        cleanup(state, d, &old, pods);
    }
    super::deployment_status::write(state, d, new_rs.as_ref(), sets, pods, want, unavailable);
}

/// One step of a rolling update: the new ReplicaSet up to what maxSurge
/// allows, the old ones down to what maxUnavailable allows.
fn roll(state: &State, d: &Value, new_rs: &Value, old: &[&Value], pods: &[Value], l: Limits) {
    let Limits {
        want,
        surge,
        unavailable,
    } = l;
    let total: i64 = old.iter().map(|s| replicas(s)).sum::<i64>() + replicas(new_rs);
    let up = (want + surge - total).max(0);
    scale(state, d, new_rs, (replicas(new_rs) + up).min(want));
    // Scale down only what is available beyond the minimum.
    let available: i64 =
        old.iter().map(|s| counts(s, pods).1).sum::<i64>() + counts(new_rs, pods).1;
    let mut budget = (available - (want - unavailable)).max(0);
    // Old pods that are not available can go at once, as the real
    // controller's clean-up of unhealthy replicas does.
    let mut old: Vec<&Value> = old.to_vec();
    old.sort_by_key(|s| {
        s["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    });
    for s in &old {
        let (_, ready) = counts(s, pods);
        let unhealthy = (replicas(s) - ready).max(0);
        let mut to = replicas(s) - unhealthy;
        let more = budget.min(to);
        to -= more;
        budget -= more;
        scale(state, d, s, to);
    }
}

/// Old ReplicaSets scaled to zero beyond `revisionHistoryLimit`, oldest first.
fn cleanup(state: &State, d: &Value, old: &[&Value], pods: &[Value]) {
    let limit = d["spec"]["revisionHistoryLimit"]
        .as_i64()
        .unwrap_or(10)
        .max(0) as usize;
    let mut idle: Vec<&Value> = old
        .iter()
        .copied()
        .filter(|s| replicas(s) == 0 && counts(s, pods).0 == 0 && !is_deleting(s))
        .collect();
    if idle.len() <= limit {
        return;
    }
    idle.sort_by_key(|s| revision(s));
    for s in &idle[..idle.len() - limit] {
        let ns = s["metadata"]["namespace"].as_str().unwrap_or("");
        let name = s["metadata"]["name"].as_str().unwrap_or("");
        let _ = crate::gc::delete(
            state,
            Resource::ReplicaSet,
            ns,
            name,
            crate::api::Propagation::Background,
        );
    }
}
