// SPDX-License-Identifier: Apache-2.0
//! `v1` Service as a real server serves it: validation worded as
//! `pkg/apis/core/validation` (ports, protocols, target ports, type), the
//! v1 defaults (`type: ClusterIP`, `protocol: TCP`, `targetPort` = `port`,
//! single-stack IPv4), a ClusterIP allocated from the service CIDR (or the
//! one asked for, if free and in range: [`super::alloc`]), create / replace /
//! patch / delete.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Value};

use crate::admission::{self, Causes, FieldValidation};
use crate::sandbox::State;
use crate::status::ApiError;
use crate::store::{Key, Resource};

const R: Resource = Resource::Service;

const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

fn push(causes: &mut Causes, field: String, reason: &str, msg: String) {
    causes.push((field, reason.into(), msg));
}

/// What `validation.IsValidPortName` says about `name` (nothing: valid).
pub(crate) fn port_name_problems(name: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    if name.len() > 15 {
        out.push("must be no more than 15 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        out.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        out.push("must contain at least one letter (a-z)");
    }
    if name.contains("--") {
        out.push("must not contain consecutive hyphens");
    }
    if name.starts_with('-') || name.ends_with('-') {
        out.push("must not begin or end with a hyphen");
    }
    out
}

fn is_dns1035_label(s: &str) -> bool {
    s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Every reason the API server would refuse `svc` (allocation aside).
fn validate(svc: &Service, obj: &Value) -> Causes {
    let mut causes = Causes::new();
    match obj["metadata"]["name"].as_str() {
        Some(n) if !n.is_empty() && !is_dns1035_label(n) => push(
            &mut causes,
            "metadata.name".into(),
            "FieldValueInvalid",
            format!("Invalid value: \"{n}\": {DNS1035_LABEL_MSG}"),
        ),
        _ => admission::validate_name(&mut causes, &obj["metadata"], 63),
    }
    let Some(spec) = &svc.spec else {
        push(
            &mut causes,
            "spec.ports".into(),
            "FieldValueRequired",
            "Required value".into(),
        );
        return causes;
    };
    let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
    if ty != "ClusterIP" {
        // The sandbox has no node ports, load balancers or external names.
        push(
            &mut causes,
            "spec.type".into(),
            "FieldValueNotSupported",
            format!("Unsupported value: \"{ty}\": supported values: \"ClusterIP\""),
        );
    }
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let ports = spec.ports.as_deref().unwrap_or_default();
    if ports.is_empty() && !headless {
        push(
            &mut causes,
            "spec.ports".into(),
            "FieldValueRequired",
            "Required value".into(),
        );
    }
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        match p.name.as_deref().unwrap_or("") {
            "" if ports.len() > 1 => push(
                &mut causes,
                format!("{path}.name"),
                "FieldValueRequired",
                "Required value".into(),
            ),
            "" => {}
            n => {
                if !names.insert(n.to_owned()) {
                    push(
                        &mut causes,
                        format!("{path}.name"),
                        "FieldValueDuplicate",
                        format!("Duplicate value: \"{n}\""),
                    );
                }
                if !crate::admission::is_label(n) {
                    push(
                        &mut causes,
                        format!("{path}.name"),
                        "FieldValueInvalid",
                        format!("Invalid value: \"{n}\": {}", admission::DNS1123_LABEL_MSG),
                    );
                }
            }
        }
        if !(1..=65535).contains(&p.port) {
            push(
                &mut causes,
                format!("{path}.port"),
                "FieldValueInvalid",
                format!(
                    "Invalid value: {}: must be between 1 and 65535, inclusive",
                    p.port
                ),
            );
        }
        if let Some(proto) = &p.protocol {
            if !["SCTP", "TCP", "UDP"].contains(&proto.as_str()) {
                push(
                    &mut causes,
                    format!("{path}.protocol"),
                    "FieldValueNotSupported",
                    format!(
                        "Unsupported value: \"{proto}\": supported values: \"SCTP\", \"TCP\", \"UDP\""
                    ),
                );
            }
        }
        match &p.target_port {
            Some(IntOrString::Int(n)) if !(1..=65535).contains(n) => push(
                &mut causes,
                format!("{path}.targetPort"),
                "FieldValueInvalid",
                format!("Invalid value: {n}: must be between 1 and 65535, inclusive"),
            ),
            Some(IntOrString::String(name)) => {
                for msg in port_name_problems(name) {
                    push(
                        &mut causes,
                        format!("{path}.targetPort"),
                        "FieldValueInvalid",
                        format!("Invalid value: \"{name}\": {msg}"),
                    );
                }
            }
            _ => {}
        }
    }
    if let Some(a) = spec.session_affinity.as_deref() {
        if a != "None" && a != "ClientIP" {
            push(
                &mut causes,
                "spec.sessionAffinity".into(),
                "FieldValueNotSupported",
                format!("Unsupported value: \"{a}\": supported values: \"ClientIP\", \"None\""),
            );
        }
    }
    families(spec, &mut causes);
    causes
}

/// The service CIDR is IPv4 in every `IpFamily`: IPv6 and required dual
/// stack are refused as `pkg/registry/core/service/storage/alloc.go`
/// refuses them on a single-stack IPv4 cluster (which exempts a headless
/// Service without a selector).
fn families(spec: &ServiceSpec, causes: &mut Causes) {
    let headless = spec.cluster_ip.as_deref() == Some("None");
    if headless && spec.selector.as_ref().is_none_or(|s| s.is_empty()) {
        return;
    }
    if spec.ip_family_policy.as_deref() == Some("RequireDualStack") {
        push(
            causes,
            "spec.ipFamilyPolicy".into(),
            "FieldValueInvalid",
            "Invalid value: \"RequireDualStack\": this cluster is not configured for dual-stack services"
                .into(),
        );
    }
    for (i, f) in spec.ip_families.iter().flatten().enumerate() {
        if f != "IPv4" {
            push(
                causes,
                format!("spec.ipFamilies[{i}]"),
                "FieldValueInvalid",
                format!("Invalid value: \"{f}\": not configured on this cluster"),
            );
        }
    }
}

/// The v1 defaults a real server fills in.
pub(crate) fn set_defaults(obj: &mut Value) {
    let spec = &mut obj["spec"];
    if !spec.is_object() {
        *spec = json!({});
    }
    for (k, v) in [
        ("type", "ClusterIP"),
        ("sessionAffinity", "None"),
        ("internalTrafficPolicy", "Cluster"),
        ("ipFamilyPolicy", "SingleStack"),
    ] {
        if spec[k].is_null() {
            spec[k] = json!(v);
        }
    }
    if spec["ipFamilies"].is_null() {
        spec["ipFamilies"] = json!(["IPv4"]);
    }
    for p in spec["ports"].as_array_mut().into_iter().flatten() {
        if p["protocol"].is_null() {
            p["protocol"] = json!("TCP");
        }
        if p["targetPort"].is_null() {
            p["targetPort"] = p["port"].clone();
        }
    }
    if obj["status"].is_null() {
        obj["status"] = json!({"loadBalancer": {}});
    }
}

fn undecodable(e: serde_json::Error) -> ApiError {
    ApiError::bad_request(format!(
        "Service in version \"v1\" cannot be handled as a Service: {e}"
    ))
}

fn check(name: &str, obj: &Value) -> Result<(), ApiError> {
    let typed: Service = serde_json::from_value(obj.clone()).map_err(undecodable)?;
    let causes = validate(&typed, obj);
    if !causes.is_empty() {
        return Err(ApiError::invalid(R, name, &causes));
    }
    Ok(())
}

/// Decoding, namespace, validation and defaults for a create or replace.
fn admit(
    state: &State,
    ns: &str,
    body: &Value,
    fv: FieldValidation,
) -> Result<(Value, Vec<String>), ApiError> {
    let (mut obj, warnings, name) = crate::api::admit_namespaced(state, R, ns, body, fv)?;
    check(&name, &obj)?;
    set_defaults(&mut obj);
    Ok((obj, warnings))
}

/// The ClusterIP fields may not change once set (`spec.clusterIPs[0]:
/// Invalid value: …: may not change once set`).
fn keep_cluster_ip(name: &str, old: &Value, new: &mut Value) -> Result<(), ApiError> {
    let asked = new["spec"]["clusterIP"].as_str().unwrap_or("");
    let had = old["spec"]["clusterIP"].as_str().unwrap_or("");
    if !asked.is_empty() && asked != had {
        return Err(ApiError::invalid(
            R,
            name,
            &[(
                "spec.clusterIPs[0]".into(),
                "FieldValueInvalid".into(),
                format!("Invalid value: []string{{\"{asked}\"}}: may not change once set"),
            )],
        ));
    }
    new["spec"]["clusterIP"] = old["spec"]["clusterIP"].clone();
    new["spec"]["clusterIPs"] = old["spec"]["clusterIPs"].clone();
    Ok(())
}

/// A changed Service (PATCH): valid, defaulted, its ClusterIP kept.
pub(crate) fn admit_change(name: &str, old: &Value, new: &mut Value) -> Result<(), ApiError> {
    check(name, new)?;
    keep_cluster_ip(name, old, new)?;
    set_defaults(new);
    Ok(())
}

/// POST: a new Service with its ClusterIP (`dry_run`: not stored; the
/// address shown is not reserved).
pub(crate) fn create(
    state: &Arc<State>,
    ns: &str,
    body: &Value,
    fv: FieldValidation,
    dry_run: bool,
) -> Result<(Value, Vec<String>), ApiError> {
    let (mut obj, warnings) = admit(state, ns, body, fv)?;
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
    let cidr = super::service_cidr(state)
        .ok_or_else(|| ApiError::unprocessable("the cluster's network is down".into()))?;
    let mut store = state.lock();
    super::alloc::allocate(&store, cidr, &mut obj).map_err(|c| ApiError::invalid(R, &name, &c))?;
    if dry_run {
        return Ok((obj, warnings));
    }
    let created = crate::api::store_new(&mut store, R, obj)?;
    Ok((created, warnings))
}

/// PUT: replaces labels, annotations and spec (the ClusterIP stays).
pub(crate) fn replace(
    state: &Arc<State>,
    ns: &str,
    name: &str,
    body: &Value,
    fv: FieldValidation,
) -> Result<(Value, Vec<String>), ApiError> {
    let (mut obj, warnings) = admit(state, ns, body, fv)?;
    crate::api::check_name_matches(&obj, name)?;
    let key = Key::new(R, ns, name);
    let mut store = state.lock();
    let old = store
        .get(&key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(R, name))?;
    keep_cluster_ip(name, &old, &mut obj)?;
    let updated = store
        .update(&key, |cur| {
            cur["spec"] = obj["spec"].clone();
            for k in ["labels", "annotations"] {
                cur["metadata"][k] = obj["metadata"][k].clone();
            }
        })
        .map_err(|_| ApiError::not_found(R, name))?;
    Ok((updated, warnings))
}

/// DELETE: gone at once, with its EndpointSlices (their owner is gone).
pub(crate) fn delete(state: &State, ns: &str, name: &str) -> Result<Value, ApiError> {
    let mut store = state.lock();
    let obj = store
        .remove(&Key::new(R, ns, name))
        .map_err(|_| ApiError::not_found(R, name))?;
    for slice in store.list(Resource::EndpointSlice, Some(ns)) {
        if slice["metadata"]["labels"][super::SERVICE_NAME_LABEL] == name {
            let sname = slice["metadata"]["name"].as_str().unwrap_or("");
            let _ = store.remove(&Key::new(Resource::EndpointSlice, ns, sname));
        }
    }
    Ok(obj)
}
