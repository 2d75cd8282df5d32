// SPDX-License-Identifier: Apache-2.0
//! `networking.k8s.io/v1` NetworkPolicy as a real server serves it:
//! validation worded as `pkg/apis/networking/validation`, the v1 defaults
//! (`policyTypes`, port `protocol`), create / replace / delete, and the
//! Table `kubectl get netpol` prints.

use std::sync::Arc;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Value};

use crate::admission::{self, Causes, FieldValidation};
use crate::sandbox::State;
use crate::status::ApiError;
use crate::store::{Key, Resource};

const R: Resource = Resource::NetworkPolicy;

fn push(causes: &mut Causes, field: String, reason: &str, msg: String) {
    causes.push((field, reason.into(), msg));
}

fn validate_selector(causes: &mut Causes, sel: &LabelSelector, path: &str) {
    for (i, e) in sel.match_expressions.iter().flatten().enumerate() {
        let p = format!("{path}.matchExpressions[{i}]");
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => push(
                causes,
                format!("{p}.values"),
                "FieldValueRequired",
                "Required value: must be specified when `operator` is 'In' or 'NotIn'".into(),
            ),
            "Exists" | "DoesNotExist" if !values.is_empty() => push(
                causes,
                format!("{p}.values"),
                "FieldValueForbidden",
                "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
                    .into(),
            ),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            op => push(
                causes,
                format!("{p}.operator"),
                "FieldValueInvalid",
                format!("Invalid value: \"{op}\": not a valid selector operator"),
            ),
        }
    }
}

fn port_range_msg(n: i32) -> Option<String> {
    (!(1..=65535).contains(&n))
        .then(|| format!("Invalid value: {n}: must be between 1 and 65535, inclusive"))
}

fn validate_port(causes: &mut Causes, p: &NetworkPolicyPort, path: &str) {
    if let Some(proto) = &p.protocol {
        if !["TCP", "UDP", "SCTP"].contains(&proto.as_str()) {
            push(
                causes,
                format!("{path}.protocol"),
                "FieldValueNotSupported",
                format!(
                    "Unsupported value: \"{proto}\": supported values: \"TCP\", \"UDP\", \"SCTP\""
                ),
            );
        }
    }
    let invalid = |causes: &mut Causes, f: &str, msg: String| {
        push(causes, format!("{path}.{f}"), "FieldValueInvalid", msg)
    };
    match (&p.port, p.end_port) {
        (Some(IntOrString::Int(n)), end) => {
            if let Some(m) = port_range_msg(*n) {
                invalid(causes, "port", m);
            }
            if let Some(end) = end {
                if end < *n {
                    invalid(
                        causes,
                        "endPort",
                        format!("Invalid value: {end}: must be greater than or equal to `port`"),
                    );
                }
                if let Some(m) = port_range_msg(end) {
                    invalid(causes, "endPort", m);
                }
            }
        }
        (Some(IntOrString::String(name)), end) => {
            if let Some(end) = end {
                invalid(
                    causes,
                    "endPort",
                    format!(
                        "Invalid value: {end}: may not be specified when `port` is non-numeric"
                    ),
                );
            }
            let ok = !name.is_empty()
                && name.len() <= 15
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && name.bytes().any(|b| b.is_ascii_lowercase())
                && !name.starts_with('-')
                && !name.ends_with('-')
                && !name.contains("--");
            if !ok {
                invalid(
                    causes,
                    "port",
                    format!(
                        "Invalid value: \"{name}\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-), \
                         at most 15 characters, at least one letter, and no leading, trailing or adjacent hyphens"
                    ),
                );
            }
        }
        (None, Some(end)) => invalid(
            causes,
            "endPort",
            format!("Invalid value: {end}: may not be specified when `port` is not specified"),
        ),
        (None, None) => {}
    }
}

fn cidr_invalid(causes: &mut Causes, path: String, value: &str) {
    push(
        causes,
        path,
        "FieldValueInvalid",
        format!("Invalid value: \"{value}\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"),
    );
}

fn validate_peer(causes: &mut Causes, peer: &NetworkPolicyPeer, path: &str) {
    let mut n = 0;
    if let Some(sel) = &peer.pod_selector {
        n += 1;
        validate_selector(causes, sel, &format!("{path}.podSelector"));
    }
    if let Some(sel) = &peer.namespace_selector {
        n += 1;
        validate_selector(causes, sel, &format!("{path}.namespaceSelector"));
    }
    if let Some(block) = &peer.ip_block {
        n += 1;
        let bp = format!("{path}.ipBlock");
        if block.cidr.is_empty() {
            push(
                causes,
                format!("{bp}.cidr"),
                "FieldValueRequired",
                "Required value".into(),
            );
        } else if let Ok(cidr) = block.cidr.parse::<IpNet>() {
            for (i, e) in block.except.iter().flatten().enumerate() {
                let ep = format!("{bp}.except[{i}]");
                match e.parse::<IpNet>() {
                    Err(_) => cidr_invalid(causes, ep, e),
                    Ok(ex)
                        if !cidr.contains(&ex.network())
                            || cidr.prefix_len() >= ex.prefix_len() =>
                    {
                        push(
                            causes,
                            ep,
                            "FieldValueInvalid",
                            format!("Invalid value: \"{e}\": must be a strict subset of `cidr`"),
                        )
                    }
                    Ok(_) => {}
                }
            }
        } else {
            cidr_invalid(causes, format!("{bp}.cidr"), &block.cidr);
        }
    }
    if n == 0 {
        push(
            causes,
            path.into(),
            "FieldValueRequired",
            "Required value: must specify a peer".into(),
        );
    } else if n > 1 && peer.ip_block.is_some() {
        push(
            causes,
            path.into(),
            "FieldValueForbidden",
            "Forbidden: may not specify both ipBlock and another peer".into(),
        );
    }
}

/// Every reason the API server would refuse `np`.
fn validate(np: &NetworkPolicy, obj: &Value) -> Causes {
    let mut causes = Causes::new();
    admission::validate_name(&mut causes, &obj["metadata"], 253);
    let Some(spec) = &np.spec else {
        return causes;
    };
    if let Some(sel) = &spec.pod_selector {
        validate_selector(&mut causes, sel, "spec.podSelector");
    }
    for (i, rule) in spec.ingress.iter().flatten().enumerate() {
        for (j, p) in rule.ports.iter().flatten().enumerate() {
            validate_port(&mut causes, p, &format!("spec.ingress[{i}].ports[{j}]"));
        }
        for (j, p) in rule.from.iter().flatten().enumerate() {
            validate_peer(&mut causes, p, &format!("spec.ingress[{i}].from[{j}]"));
        }
    }
    for (i, rule) in spec.egress.iter().flatten().enumerate() {
        for (j, p) in rule.ports.iter().flatten().enumerate() {
            validate_port(&mut causes, p, &format!("spec.egress[{i}].ports[{j}]"));
        }
        for (j, p) in rule.to.iter().flatten().enumerate() {
            validate_peer(&mut causes, p, &format!("spec.egress[{i}].to[{j}]"));
        }
    }
    for (i, t) in spec.policy_types.iter().flatten().enumerate() {
        if t != "Ingress" && t != "Egress" {
            push(
                &mut causes,
                format!("spec.policyTypes[{i}]"),
                "FieldValueNotSupported",
                format!("Unsupported value: \"{t}\": supported values: \"Ingress\", \"Egress\""),
            );
        }
    }
    causes
}

/// The v1 defaults: `policyTypes` from the rules present, `protocol: TCP`.
fn set_defaults(obj: &mut Value) {
    let spec = &mut obj["spec"];
    if !spec.is_object() {
        *spec = json!({});
    }
    if !spec["podSelector"].is_object() {
        spec["podSelector"] = json!({});
    }
    if spec["policyTypes"].as_array().is_none_or(Vec::is_empty) {
        let mut types = vec!["Ingress"];
        if spec["egress"].as_array().is_some_and(|e| !e.is_empty()) {
            types.push("Egress");
        }
        spec["policyTypes"] = json!(types);
    }
    for dir in ["ingress", "egress"] {
        for rule in spec[dir].as_array_mut().into_iter().flatten() {
            for port in rule["ports"].as_array_mut().into_iter().flatten() {
                if port["protocol"].is_null() {
                    port["protocol"] = json!("TCP");
                }
            }
        }
    }
}

/// Decoding, namespace, validation and defaults for a create or replace.
fn admit(
    state: &State,
    ns: &str,
    body: &Value,
    fv: FieldValidation,
) -> Result<(Value, Vec<String>), ApiError> {
    let (mut obj, warnings, name) = crate::api::admit_namespaced(state, R, ns, body, fv)?;
    let typed: NetworkPolicy = serde_json::from_value(obj.clone()).map_err(undecodable)?;
    let causes = validate(&typed, &obj);
    if !causes.is_empty() {
        return Err(ApiError::invalid(R, &name, &causes));
    }
    set_defaults(&mut obj);
    Ok((obj, warnings))
}

/// A changed policy (PATCH): valid, defaulted, a new generation when the
/// spec changed.
pub(crate) fn admit_change(name: &str, old: &Value, new: &mut Value) -> Result<(), ApiError> {
    let causes = match serde_json::from_value::<NetworkPolicy>(new.clone()) {
        Ok(typed) => validate(&typed, new),
        Err(e) => return Err(undecodable(e)),
    };
    if !causes.is_empty() {
        return Err(ApiError::invalid(R, name, &causes));
    }
    set_defaults(new);
    if new["spec"] != old["spec"] {
        let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
        new["metadata"]["generation"] = json!(g + 1);
    }
    Ok(())
}

fn undecodable(e: serde_json::Error) -> ApiError {
    ApiError::bad_request(format!(
        "NetworkPolicy in version \"v1\" cannot be handled as a NetworkPolicy: {e}"
    ))
}

/// POST: a new policy (`dry_run`: checked and defaulted, not stored).
pub(crate) fn create(
    state: &Arc<State>,
    ns: &str,
    body: &Value,
    fv: FieldValidation,
    dry_run: bool,
) -> Result<(Value, Vec<String>), ApiError> {
    let (mut obj, warnings) = admit(state, ns, body, fv)?;
    obj["metadata"]["generation"] = json!(1);
    if dry_run {
        return Ok((obj, warnings));
    }
    let created = crate::api::store_new(&mut state.lock(), R, obj)?;
    Ok((created, warnings))
}

/// PUT: replaces labels, annotations and spec (a new generation when the
/// spec changes).
pub(crate) fn replace(
    state: &Arc<State>,
    ns: &str,
    name: &str,
    body: &Value,
    fv: FieldValidation,
) -> Result<(Value, Vec<String>), ApiError> {
    let (obj, warnings) = admit(state, ns, body, fv)?;
    crate::api::check_name_matches(&obj, name)?;
    let key = Key::new(R, ns, name);
    let updated = state
        .lock()
        .update(&key, |cur| {
            if cur["spec"] != obj["spec"] {
                let g = cur["metadata"]["generation"].as_i64().unwrap_or(1);
                cur["metadata"]["generation"] = json!(g + 1);
                cur["spec"] = obj["spec"].clone();
            }
            for k in ["labels", "annotations"] {
                cur["metadata"][k] = obj["metadata"][k].clone();
            }
        })
        .map_err(|_| ApiError::not_found(R, name))?;
    Ok((updated, warnings))
}

/// DELETE: gone at once (no finalizers); answers with the object.
pub(crate) fn delete(state: &State, ns: &str, name: &str) -> Result<Value, ApiError> {
    state
        .lock()
        .remove(&Key::new(R, ns, name))
        .map_err(|_| ApiError::not_found(R, name))
}

/// `kubectl get netpol`'s columns: Name, Pod-Selector, Age.
pub(crate) fn table_cells(
    o: &Value,
    name: Value,
    age: Value,
) -> (Vec<(&'static str, &'static str, u8)>, Vec<Value>) {
    let sel: LabelSelector =
        serde_json::from_value(o["spec"]["podSelector"].clone()).unwrap_or_default();
    let mut parts: Vec<String> = sel
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in sel.match_expressions.iter().flatten() {
        let vals = e.values.as_deref().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({vals})", e.key),
            "NotIn" => format!("{} notin ({vals})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    let selector = if parts.is_empty() {
        "<none>".to_owned()
    } else {
        parts.join(",")
    };
    (
        vec![
            ("Name", "string", 0),
            ("Pod-Selector", "string", 0),
            ("Age", "string", 0),
        ],
        vec![name, json!(selector), age],
    )
}
