// SPDX-License-Identifier: Apache-2.0
//! The Job controller (and the TTL-after-finished controller): makes each
//! Job's pod, keeps its status, fails it on its deadline or back-off limit,
//! completes it and deletes it when its TTL runs out.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::api::{self, Propagation};
use crate::objects::event_for;
use crate::sandbox::State;
use crate::selectors::LabelSelector;
use crate::store::{now, random_suffix, Key, Resource};

const CONTROLLER: &str = "job-controller";

/// Runs until aborted, reconciling on every change (and every 200 ms, for
/// deadlines and TTLs).
pub async fn run(state: Arc<State>) {
    let mut memory = Memory::default();
    state
        .run_controller(|state| reconcile(state, &mut memory))
        .await;
}

fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn condition(ty: &str, reason: &str, message: &str) -> Value {
    let ts = now();
    json!({"type": ty, "status": "True", "reason": reason, "message": message,
           "lastProbeTime": ts, "lastTransitionTime": ts})
}

/// The Job's pods: those its selector matches and it controls.
pub fn pods_of(state: &State, job: &Value) -> Vec<Value> {
    let ns = job["metadata"]["namespace"].as_str().unwrap_or("");
    let uid = &job["metadata"]["uid"];
    let sel = LabelSelector::parse(&format!(
        "batch.kubernetes.io/controller-uid={}",
        uid.as_str().unwrap_or("")
    ))
    .unwrap_or_default();
    state
        .lock()
        .list(Resource::Pod, Some(ns))
        .into_iter()
        .filter(|p| sel.matches(&p["metadata"]["labels"]))
        .filter(|p| {
            p["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|o| o["uid"] == *uid)
        })
        .collect()
}

/// What the controller remembers between passes.
#[derive(Default)]
struct Memory {
    /// Job uid → when to retry a refused pod creation, and the back-off.
    retry: HashMap<String, (Instant, Duration)>,
    /// Job uid → uids of its pods counted as succeeded / failed, so a pod
    /// that is deleted after it ended (or while it ran) still counts, as
    /// the real controller's job-tracking finalizer ensures.
    counted: HashMap<String, (HashSet<String>, HashSet<String>)>,
}

fn reconcile(state: &Arc<State>, memory: &mut Memory) {
    let ended: Vec<EndedPod> = std::mem::take(
        &mut *state
            .ended_job_pods
            .lock()
            .unwrap_or_else(|e| e.into_inner()),
    );
    for p in ended {
        let (ok, failed) = memory.counted.entry(p.job_uid).or_default();
        if p.succeeded {
            ok.insert(p.pod_uid);
        } else {
            failed.insert(p.pod_uid);
        }
    }
    // Pods whose Job is gone are the garbage collector's (`gc`).
    let jobs = state.lock().list(Resource::Job, None);
    memory.counted.retain(|uid, _| {
        jobs.iter()
            .any(|j| j["metadata"]["uid"].as_str() == Some(uid.as_str()))
    });
    for job in jobs {
        reconcile_job(state, &job, memory);
    }
}

/// A Job's pod removed from the store, for the controller to count.
#[derive(Debug)]
pub struct EndedPod {
    pub job_uid: String,
    pub pod_uid: String,
    pub succeeded: bool,
}

fn reconcile_job(state: &Arc<State>, job: &Value, memory: &mut Memory) {
    let retry = &mut memory.retry;
    let ns = job["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let name = job["metadata"]["name"].as_str().unwrap_or("").to_owned();
    let uid = job["metadata"]["uid"].as_str().unwrap_or("").to_owned();
    let key = Key::new(Resource::Job, &ns, &name);
    let pods = pods_of(state, job);
    // Being deleted in the foreground: its pods are the garbage collector's.
    if !job["metadata"]["deletionTimestamp"].is_null() {
        return;
    }
    let phase = |p: &Value| {
        p["status"]["phase"]
            .as_str()
            .unwrap_or("Pending")
            .to_owned()
    };
    let deleting = |p: &Value| !p["metadata"]["deletionTimestamp"].is_null();
    let active: Vec<&Value> = pods
        .iter()
        .filter(|p| !deleting(p) && (phase(p) == "Pending" || phase(p) == "Running"))
        .collect();
    let terminating = pods
        .iter()
        .filter(|p| deleting(p) && (phase(p) == "Pending" || phase(p) == "Running"))
        .count();
    // Counted by pod uid, with the pods already gone from the store.
    let (ok, failed_set) = memory.counted.entry(uid.clone()).or_default();
    for p in &pods {
        let puid = p["metadata"]["uid"].as_str().unwrap_or("").to_owned();
        match phase(p).as_str() {
            "Succeeded" => {
                ok.insert(puid);
            }
            "Failed" => {
                failed_set.insert(puid);
            }
            _ => {}
        }
    }
    let succeeded = ok.len() as i64;
    let failed = failed_set.len() as i64;
    let ready = active
        .iter()
        .filter(|p| {
            p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .count();
    let spec = &job["spec"];
    let conditions = job["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let finished_at = conditions
        .iter()
        .find(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")
        .and_then(|c| parse_time(&c["lastTransitionTime"]));
    let now_t = Utc::now();

    if let Some(done) = finished_at {
        // Stop what is left (a Failed job's pods), keep counts, then TTL.
        let mut st = state.lock();
        let _ = st.update(&key, |j| {
            j["status"]["active"] = json!(active.len());
            j["status"]["ready"] = json!(ready);
            j["status"]["terminating"] = json!(terminating);
            j["status"]["succeeded"] =
                json!(succeeded.max(j["status"]["succeeded"].as_i64().unwrap_or(0)));
            j["status"]["failed"] = json!(failed);
            clean_counts(j);
        });
        drop(st);
        if let Some(ttl) = spec["ttlSecondsAfterFinished"].as_i64() {
            if now_t >= done + chrono::Duration::seconds(ttl) {
                let _ = api::delete_job(state, &ns, &name, Propagation::Foreground);
            }
        }
        return;
    }

    let start = parse_time(&job["status"]["startTime"]).unwrap_or(now_t);
    let deadline_hit = spec["activeDeadlineSeconds"]
        .as_i64()
        .is_some_and(|ads| now_t >= start + chrono::Duration::seconds(ads));
    let backoff = spec["backoffLimit"].as_i64().unwrap_or(6);
    let completions = spec["completions"].as_i64().unwrap_or(1);
    let parallelism = spec["parallelism"].as_i64().unwrap_or(1);
    let failure = if deadline_hit {
        Some((
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        ))
    } else if failed > backoff {
        Some((
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ))
    } else {
        None
    };
    if let Some((reason, message)) = failure {
        delete_pods(state, &ns, &active);
        let mut st = state.lock();
        let _ = st.update(&key, |j| {
            let mut c = j["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            c.push(condition("FailureTarget", reason, message));
            c.push(condition("Failed", reason, message));
            j["status"]["conditions"] = json!(c);
            j["status"]["startTime"] =
                json!(start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            j["status"]["active"] = json!(0);
            j["status"]["ready"] = json!(0);
            j["status"]["terminating"] = json!(terminating + active.len());
            j["status"]["failed"] = json!(failed + active.len() as i64);
            clean_counts(j);
        });
        event_for(&mut st, &key, "Warning", reason, message, CONTROLLER, None);
        return;
    }
    if succeeded >= completions {
        // Complete: pods still running (replacements) are not needed.
        delete_pods(state, &ns, &active);
        let mut st = state.lock();
        let _ = st.update(&key, |j| {
            let mut c = j["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            c.push(condition(
                "SuccessCriteriaMet",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            ));
            c.push(condition(
                "Complete",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            ));
            j["status"]["conditions"] = json!(c);
            j["status"]["completionTime"] = json!(now());
            j["status"]["succeeded"] = json!(succeeded);
            j["status"]["active"] = json!(0);
            j["status"]["ready"] = json!(0);
            clean_counts(j);
        });
        event_for(
            &mut st,
            &key,
            "Normal",
            "Completed",
            "Job completed",
            CONTROLLER,
            None,
        );
        return;
    }
    let mut want = (parallelism.min(completions - succeeded) - active.len() as i64).max(0);
    // Creation failures (admission) are retried with back-off, each one
    // reported as a FailedCreate event, as the real controller does.
    let due = retry.get(&uid).is_none_or(|(at, _)| Instant::now() >= *at);
    while want > 0 && due {
        want -= 1;
        match create_pod(state, job) {
            Ok(pod_name) => {
                retry.remove(&uid);
                event_for(
                    &mut state.lock(),
                    &key,
                    "Normal",
                    "SuccessfulCreate",
                    &format!("Created pod: {pod_name}"),
                    CONTROLLER,
                    None,
                );
            }
            Err(msg) => {
                let delay = retry.get(&uid).map_or(Duration::from_secs(1), |(_, d)| {
                    (*d * 2).min(Duration::from_secs(30))
                });
                retry.insert(uid.clone(), (Instant::now() + delay, delay));
                event_for(
                    &mut state.lock(),
                    &key,
                    "Warning",
                    "FailedCreate",
                    &format!("Error creating: {msg}"),
                    CONTROLLER,
                    None,
                );
                break;
            }
        }
    }
    let active_now = pods_of(state, job)
        .iter()
        .filter(|p| !deleting(p) && (phase(p) == "Pending" || phase(p) == "Running"))
        .count();
    let _ = state.lock().update(&key, |j| {
        if j["status"]["startTime"].is_null() {
            j["status"]["startTime"] = json!(now());
        }
        j["status"]["active"] = json!(active_now);
        j["status"]["ready"] = json!(ready);
        j["status"]["terminating"] = json!(terminating);
        j["status"]["succeeded"] = json!(succeeded);
        j["status"]["failed"] = json!(failed);
        clean_counts(j);
    });
}

/// A real Job status omits zero counters (they are `omitempty`).
fn clean_counts(j: &mut Value) {
    if let Some(s) = j["status"].as_object_mut() {
        for k in ["active", "succeeded", "failed"] {
            if s.get(k) == Some(&json!(0)) {
                s.remove(k);
            }
        }
        s.insert("uncountedTerminatedPods".into(), json!({}));
    }
}

/// Creates one pod from the Job's template; `Err` is the API's refusal.
fn create_pod(state: &Arc<State>, job: &Value) -> Result<String, String> {
    let name = job["metadata"]["name"].as_str().unwrap_or("");
    let ns = job["metadata"]["namespace"].as_str().unwrap_or("");
    let template = &job["spec"]["template"];
    let pod_name = format!("{name}-{}", random_suffix());
    let mut meta = template["metadata"].clone();
    if !meta.is_object() {
        meta = json!({});
    }
    meta["name"] = json!(pod_name);
    meta["namespace"] = json!(ns);
    meta["ownerReferences"] = json!([{
        "apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": job["metadata"]["uid"],
        "controller": true, "blockOwnerDeletion": true,
    }]);
    let pod =
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]});
    api::create_pod(state, pod).map_err(|e| e.message)?;
    Ok(pod_name)
}

/// Deletes a finished Job's pods that are still running.
fn delete_pods(state: &Arc<State>, ns: &str, pods: &[&Value]) {
    for p in pods {
        let _ = api::delete_pod(
            state,
            ns,
            p["metadata"]["name"].as_str().unwrap_or(""),
            None,
        );
    }
}
