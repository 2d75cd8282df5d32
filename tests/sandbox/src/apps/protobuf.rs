// SPDX-License-Identifier: Apache-2.0
//! The protobuf `apps/v1` Deployment that `kubectl create deployment`
//! sends, read into JSON: the fields that command sets (name, labels,
//! replicas, selector, template with containers: name, image, command,
//! args, ports, env) and the strategy. Field numbers are those of
//! k8s.io/api's `generated.proto`; empty strings are Go's zero values,
//! not set fields.

use serde_json::{json, Map, Value};

use crate::protobuf::{field, fields, number, object_meta, text};

/// Non-empty strings of repeated field `n`.
fn strings(f: &[(u64, &[u8])], n: u64) -> Vec<String> {
    f.iter()
        .filter(|(k, _)| *k == n)
        .filter_map(|(_, v)| text(Some(v)))
        .collect()
}

/// Sets `out[key]` to field `n` when it is a non-empty string.
fn set_text(out: &mut Value, key: &str, f: &[(u64, &[u8])], n: u64) {
    if let Some(s) = text(field(f, n)).filter(|s| !s.is_empty()) {
        out[key] = json!(s);
    }
}

/// map<string, string> field `n`: repeated entries {key = 1, value = 2}.
fn string_map(f: &[(u64, &[u8])], n: u64) -> Option<Value> {
    let m: Map<String, Value> = f
        .iter()
        .filter(|(k, _)| *k == n)
        .map(|(_, e)| {
            let e = fields(e);
            (
                text(field(&e, 1)).unwrap_or_default(),
                json!(text(field(&e, 2)).unwrap_or_default()),
            )
        })
        .collect();
    (!m.is_empty()).then_some(Value::Object(m))
}

/// An `IntOrString` {type = 1, intVal = 2, strVal = 3}.
fn int_or_string(raw: &[u8]) -> Value {
    match number(raw, 1) {
        Some(1) => json!(text(field(&fields(raw), 3)).unwrap_or_default()),
        _ => json!(number(raw, 2).unwrap_or(0) as i32),
    }
}

fn label_selector(raw: &[u8]) -> Value {
    let f = fields(raw);
    let mut out = json!({});
    if let Some(m) = string_map(&f, 1) {
        out["matchLabels"] = m;
    }
    let exprs: Vec<Value> = f
        .iter()
        .filter(|(k, _)| *k == 2)
        .map(|(_, e)| {
            let e = fields(e);
            json!({"key": text(field(&e, 1)), "operator": text(field(&e, 2)), "values": strings(&e, 3)})
        })
        .collect();
    if !exprs.is_empty() {
        out["matchExpressions"] = json!(exprs);
    }
    out
}

fn container(raw: &[u8]) -> Value {
    let f = fields(raw);
    let mut c = json!({});
    set_text(&mut c, "name", &f, 1);
    set_text(&mut c, "image", &f, 2);
    set_text(&mut c, "workingDir", &f, 5);
    set_text(&mut c, "imagePullPolicy", &f, 14);
    for (n, k) in [(3, "command"), (4, "args")] {
        let v = strings(&f, n);
        if !v.is_empty() {
            c[k] = json!(v);
        }
    }
    let ports: Vec<Value> = f
        .iter()
        .filter(|(k, _)| *k == 6)
        .map(|(_, p)| {
            let pf = fields(p);
            let mut port = json!({"containerPort": number(p, 3).unwrap_or(0) as i32});
            set_text(&mut port, "name", &pf, 1);
            set_text(&mut port, "protocol", &pf, 4);
            port
        })
        .collect();
    if !ports.is_empty() {
        c["ports"] = json!(ports);
    }
    let env: Vec<Value> = f
        .iter()
        .filter(|(k, _)| *k == 7)
        .map(|(_, e)| {
            let e = fields(e);
            json!({"name": text(field(&e, 1)), "value": text(field(&e, 2)).unwrap_or_default()})
        })
        .collect();
    if !env.is_empty() {
        c["env"] = json!(env);
    }
    c
}

fn pod_spec(raw: &[u8]) -> Value {
    let f = fields(raw);
    let containers: Vec<Value> = f
        .iter()
        .filter(|(k, _)| *k == 2)
        .map(|(_, c)| container(c))
        .collect();
    let mut spec = json!({"containers": containers});
    for (n, k) in [
        (3, "restartPolicy"),
        (6, "dnsPolicy"),
        (8, "serviceAccountName"),
        (10, "nodeName"),
        (19, "schedulerName"),
    ] {
        set_text(&mut spec, k, &f, n);
    }
    if let Some(g) = number(raw, 4) {
        spec["terminationGracePeriodSeconds"] = json!(g as i64);
    }
    if number(raw, 11) == Some(1) {
        spec["hostNetwork"] = json!(true);
    }
    if let Some(m) = string_map(&f, 7) {
        spec["nodeSelector"] = m;
    }
    spec
}

/// A Deployment's `raw` bytes (inside the `runtime.Unknown`) as JSON.
pub fn deployment(raw: &[u8]) -> Value {
    let d = fields(raw);
    let mut out = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": object_meta(field(&d, 1).unwrap_or_default()), "spec": {}});
    let Some(spec_raw) = field(&d, 2) else {
        return out;
    };
    let spec = fields(spec_raw);
    let s = &mut out["spec"];
    if let Some(r) = number(spec_raw, 1) {
        s["replicas"] = json!(r as i32);
    }
    if let Some(sel) = field(&spec, 2) {
        s["selector"] = label_selector(sel);
    }
    if let Some(t) = field(&spec, 3) {
        let t = fields(t);
        s["template"] = json!({"metadata": object_meta(field(&t, 1).unwrap_or_default()),
                               "spec": pod_spec(field(&t, 2).unwrap_or_default())});
    }
    if let Some(st) = field(&spec, 4) {
        let stf = fields(st);
        let mut strategy = json!({});
        set_text(&mut strategy, "type", &stf, 1);
        if let Some(ru) = field(&stf, 2) {
            let ruf = fields(ru);
            for (n, k) in [(1, "maxUnavailable"), (2, "maxSurge")] {
                if let Some(v) = field(&ruf, n) {
                    strategy["rollingUpdate"][k] = int_or_string(v);
                }
            }
        }
        if strategy.as_object().is_some_and(|m| !m.is_empty()) {
            s["strategy"] = strategy;
        }
    }
    for (n, k) in [(6, "revisionHistoryLimit"), (9, "progressDeadlineSeconds")] {
        if let Some(v) = number(spec_raw, n) {
            s[k] = json!(v as i32);
        }
    }
    if let Some(v) = number(spec_raw, 5).filter(|v| *v > 0) {
        s["minReadySeconds"] = json!(v as i32);
    }
    if number(spec_raw, 7) == Some(1) {
        s["paused"] = json!(true);
    }
    out
}
