// SPDX-License-Identifier: Apache-2.0
//! What a real API server does to an object before storing it: decoding
//! with field validation, defaulting, validation (422 Invalid) and Pod
//! Security admission.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::status::ApiError;
use crate::store::Resource;

/// `fieldValidation` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn parse(s: Option<&str>) -> Result<FieldValidation, ApiError> {
        match s {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(o) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: \"{o}\", must be one of \"Ignore\", \"Warn\", \"Strict\""
            ))),
        }
    }
}

/// Paths (`spec.template.spec.containers[0].foo`) in `input` that the typed
/// object `T` does not know: what strict decoding reports.
pub fn unknown_fields<T: DeserializeOwned + Serialize>(
    input: &Value,
) -> Result<Vec<String>, String> {
    let typed: T = serde_json::from_value(input.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    diff(input, &back, "", &mut out);
    Ok(out)
}

fn diff(input: &Value, known: &Value, path: &str, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                if v.is_null() || (path.is_empty() && (k == "apiVersion" || k == "kind")) {
                    continue;
                }
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    Some(bv) => diff(v, bv, &p, out),
                    None => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff(x, y, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
pub(crate) const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

pub(crate) fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_label)
}

pub(crate) type Causes = Vec<(String, String, String)>;

fn required(causes: &mut Causes, field: &str, detail: &str) {
    let msg = if detail.is_empty() {
        "Required value".to_owned()
    } else {
        format!("Required value: {detail}")
    };
    causes.push((field.into(), "FieldValueRequired".into(), msg));
}

fn invalid(causes: &mut Causes, field: &str, value: &str, detail: &str) {
    causes.push((
        field.into(),
        "FieldValueInvalid".into(),
        format!("Invalid value: \"{value}\": {detail}"),
    ));
}

pub(crate) fn validate_name(causes: &mut Causes, meta: &Value, max: usize) {
    match meta["name"].as_str() {
        None | Some("") => required(causes, "metadata.name", "name or generateName is required"),
        Some(n) if !is_subdomain(n) => invalid(causes, "metadata.name", n, DNS1123_SUBDOMAIN_MSG),
        Some(n) if n.len() > max => invalid(
            causes,
            "metadata.name",
            n,
            &format!("must be no more than {max} characters"),
        ),
        _ => {}
    }
}

pub(crate) fn validate_pod_spec(causes: &mut Causes, spec: &Value, path: &str, job: bool) {
    let containers = spec["containers"].as_array().filter(|c| !c.is_empty());
    let Some(containers) = containers else {
        required(causes, &format!("{path}.containers"), "");
        return;
    };
    for (i, c) in containers.iter().enumerate() {
        let p = format!("{path}.containers[{i}]");
        match c["name"].as_str() {
            None | Some("") => required(causes, &format!("{p}.name"), ""),
            Some(n) if !is_label(n) => invalid(causes, &format!("{p}.name"), n, DNS1123_LABEL_MSG),
            _ => {}
        }
        if c["image"].as_str().is_none_or(str::is_empty) {
            required(causes, &format!("{p}.image"), "");
        }
    }
    let restart = spec["restartPolicy"].as_str();
    if job {
        match restart {
            None => required(
                causes,
                &format!("{path}.restartPolicy"),
                "valid values: \"OnFailure\", \"Never\"",
            ),
            Some("OnFailure") | Some("Never") => {}
            Some(o) => causes.push((
                format!("{path}.restartPolicy"),
                "FieldValueNotSupported".into(),
                format!("Unsupported value: \"{o}\": supported values: \"OnFailure\", \"Never\""),
            )),
        }
    }
}

/// Validates and defaults a Job about to be created (`uid` is its new uid).
pub fn admit_job(job: &mut Value, uid: &str) -> Result<(), ApiError> {
    let name = job["metadata"]["name"].as_str().unwrap_or("").to_owned();
    let mut causes = Causes::new();
    // A Job's name becomes a label value on its pods: at most 63 characters.
    validate_name(&mut causes, &job["metadata"], 63);
    if job["spec"]["template"].is_null() {
        required(&mut causes, "spec.template", "");
    } else {
        validate_pod_spec(
            &mut causes,
            &job["spec"]["template"]["spec"],
            "spec.template.spec",
            true,
        );
    }
    for f in [
        "backoffLimit",
        "activeDeadlineSeconds",
        "ttlSecondsAfterFinished",
        "parallelism",
        "completions",
    ] {
        if let Some(v) = job["spec"][f].as_i64() {
            if v < 0 || (f == "activeDeadlineSeconds" && v == 0) {
                let detail = if f == "activeDeadlineSeconds" {
                    "must be greater than 0"
                } else {
                    "must be greater than or equal to 0"
                };
                causes.push((
                    format!("spec.{f}"),
                    "FieldValueInvalid".into(),
                    format!("Invalid value: {v}: {detail}"),
                ));
            }
        }
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid(Resource::Job, &name, &causes));
    }
    for (k, v) in [
        ("parallelism", json!(1)),
        ("completions", json!(1)),
        ("backoffLimit", json!(6)),
        ("completionMode", json!("NonIndexed")),
        ("suspend", json!(false)),
        ("manualSelector", json!(false)),
        ("podReplacementPolicy", json!("TerminatingOrFailed")),
    ] {
        if job["spec"][k].is_null() {
            job["spec"][k] = v;
        }
    }
    let job_labels = json!({
        "batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
        "controller-uid": uid, "job-name": name,
    });
    job["spec"]["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    for (k, v) in job_labels.as_object().into_iter().flatten() {
        job["spec"]["template"]["metadata"]["labels"][k] = v.clone();
        job["metadata"]["labels"][k] = v.clone();
    }
    default_pod_spec(&mut job["spec"]["template"]["spec"]);
    job["status"] = json!({});
    Ok(())
}

/// The defaults a real server fills into every pod spec.
pub fn default_pod_spec(spec: &mut Value) {
    for (k, v) in [
        ("restartPolicy", json!("Always")),
        ("dnsPolicy", json!("ClusterFirst")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("schedulerName", json!("default-scheduler")),
        ("securityContext", json!({})),
    ] {
        if spec[k].is_null() {
            spec[k] = v;
        }
    }
    if let Some(cs) = spec["containers"].as_array_mut() {
        for c in cs {
            let image = c["image"].as_str().unwrap_or("").to_owned();
            let tagless =
                !image.rsplit('/').next().unwrap_or("").contains(':') && !image.contains('@');
            let policy = if tagless || image.ends_with(":latest") {
                "Always"
            } else {
                "IfNotPresent"
            };
            for (k, v) in [
                ("imagePullPolicy", json!(policy)),
                ("resources", json!({})),
                ("terminationMessagePath", json!("/dev/termination-log")),
                ("terminationMessagePolicy", json!("File")),
            ] {
                if c[k].is_null() {
                    c[k] = v;
                }
            }
        }
    }
}

/// Validates and defaults a Pod about to be created.
pub fn admit_pod(pod: &mut Value) -> Result<(), ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_owned();
    let mut causes = Causes::new();
    validate_name(&mut causes, &pod["metadata"], 253);
    validate_pod_spec(&mut causes, &pod["spec"], "spec", false);
    if !causes.is_empty() {
        return Err(ApiError::invalid(Resource::Pod, &name, &causes));
    }
    default_pod_spec(&mut pod["spec"]);
    if pod["spec"]["serviceAccountName"].is_null() {
        pod["spec"]["serviceAccountName"] = json!("default");
        pod["spec"]["serviceAccount"] = json!("default");
    }
    if pod["spec"]["tolerations"].is_null() {
        pod["spec"]["tolerations"] = json!([
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        ]);
    }
    pod["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
    Ok(())
}

/// Validates and defaults a Namespace about to be created: a DNS-1123
/// label for a name, the `kubernetes.io/metadata.name` label, the
/// `kubernetes` finalizer and phase `Active`, as a real server sets them.
pub fn admit_namespace(ns: &mut Value) -> Result<(), ApiError> {
    let name = ns["metadata"]["name"].as_str().unwrap_or("").to_owned();
    let mut causes = Causes::new();
    match name.as_str() {
        "" => required(
            &mut causes,
            "metadata.name",
            "name or generateName is required",
        ),
        n if !is_label(n) => invalid(&mut causes, "metadata.name", n, DNS1123_LABEL_MSG),
        _ => {}
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid(Resource::Namespace, &name, &causes));
    }
    set_namespace_defaults(ns);
    ns["status"] = json!({"phase": "Active"});
    Ok(())
}

/// What a real server keeps true of a namespace on create and update.
pub fn set_namespace_defaults(ns: &mut Value) {
    let name = ns["metadata"]["name"].clone();
    ns["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
    if ns["spec"]["finalizers"].is_null() {
        ns["spec"]["finalizers"] = json!(["kubernetes"]);
    }
}

/// Pod Security admission for a pod in a namespace labelled `enforce=level`:
/// `Err(reason)` with the real wording, e.g. `violates PodSecurity
/// "baseline:latest": host namespaces (hostNetwork=true), privileged (…)`.
pub fn pod_security(level: &str, version: &str, pod: &Value) -> Result<(), String> {
    if level != "baseline" && level != "restricted" {
        return Ok(());
    }
    let spec = &pod["spec"];
    let containers: Vec<&Value> = ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| spec[k].as_array().into_iter().flatten())
        .collect();
    let quoted = |v: Vec<String>| {
        v.iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut v: Vec<String> = Vec::new();
    let restricted = level == "restricted";
    // The checks in the order the real policy reports them.
    if restricted {
        let bad: Vec<String> = containers
            .iter()
            .filter(|c| c["securityContext"]["allowPrivilegeEscalation"] != json!(false))
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .collect();
        if !bad.is_empty() {
            v.push(format!(
                "allowPrivilegeEscalation != false ({} {} must set securityContext.allowPrivilegeEscalation=false)",
                if bad.len() == 1 { "container" } else { "containers" }, quoted(bad)
            ));
        }
    }
    const BASELINE_CAPS: &[&str] = &[
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    ];
    let mut caps_bad = Vec::new();
    let mut caps_set = Vec::new();
    for c in &containers {
        let added: Vec<String> = c["securityContext"]["capabilities"]["add"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str())
            .filter(|cap| {
                if restricted {
                    *cap != "NET_BIND_SERVICE"
                } else {
                    !BASELINE_CAPS.contains(cap)
                }
            })
            .map(str::to_owned)
            .collect();
        if !added.is_empty() {
            caps_bad.push(c["name"].as_str().unwrap_or("").to_owned());
            caps_set.extend(added);
        }
    }
    if !caps_bad.is_empty() {
        caps_set.sort();
        caps_set.dedup();
        v.push(format!(
            "{} ({} {} must not include {} in securityContext.capabilities.add)",
            if restricted {
                "unrestricted capabilities"
            } else {
                "non-default capabilities"
            },
            if caps_bad.len() == 1 {
                "container"
            } else {
                "containers"
            },
            quoted(caps_bad),
            caps_set
                .iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let hosts: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .iter()
        .filter(|k| spec[**k] == json!(true))
        .map(|k| format!("{k}=true"))
        .collect();
    if !hosts.is_empty() {
        v.push(format!("host namespaces ({})", hosts.join(", ")));
    }
    let host_paths: Vec<String> = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|vol| !vol["hostPath"].is_null())
        .filter_map(|vol| vol["name"].as_str().map(str::to_owned))
        .collect();
    if !host_paths.is_empty() {
        v.push(format!(
            "hostPath {} ({} {})",
            if host_paths.len() == 1 {
                "volume"
            } else {
                "volumes"
            },
            if host_paths.len() == 1 {
                "volume"
            } else {
                "volumes"
            },
            quoted(host_paths)
        ));
    }
    let privileged: Vec<String> = containers
        .iter()
        .filter(|c| c["securityContext"]["privileged"] == json!(true))
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect();
    if !privileged.is_empty() {
        v.push(format!(
            "privileged ({} {} must not set securityContext.privileged=true)",
            if privileged.len() == 1 {
                "container"
            } else {
                "containers"
            },
            quoted(privileged)
        ));
    }
    if restricted {
        let pod_non_root = spec["securityContext"]["runAsNonRoot"] == json!(true);
        let bad: Vec<String> = containers
            .iter()
            .filter(|c| !pod_non_root && c["securityContext"]["runAsNonRoot"] != json!(true))
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .collect();
        if !bad.is_empty() {
            v.push(format!(
                "runAsNonRoot != true (pod or {} {} must set securityContext.runAsNonRoot=true)",
                if bad.len() == 1 {
                    "container"
                } else {
                    "containers"
                },
                quoted(bad)
            ));
        }
        let pod_seccomp = !spec["securityContext"]["seccompProfile"]["type"].is_null();
        let bad: Vec<String> = containers
            .iter()
            .filter(|c| !pod_seccomp && c["securityContext"]["seccompProfile"]["type"].is_null())
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .collect();
        if !bad.is_empty() {
            v.push(format!(
                "seccompProfile (pod or {} {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")",
                if bad.len() == 1 { "container" } else { "containers" }, quoted(bad)
            ));
        }
    }
    if v.is_empty() {
        return Ok(());
    }
    Err(format!(
        "violates PodSecurity \"{level}:{version}\": {}",
        v.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_found_by_path() {
        let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "a", "bogus": 1},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i", "extra": true}]}}}});
        let unknown = unknown_fields::<k8s_openapi::api::batch::v1::Job>(&job).unwrap();
        assert_eq!(
            unknown,
            vec!["metadata.bogus", "spec.template.spec.containers[0].extra"]
        );
    }

    #[test]
    fn baseline_rejects_a_privileged_host_network_pod_with_the_real_wording() {
        let pod = json!({"spec": {"hostNetwork": true, "hostPID": true,
            "containers": [{"name": "runner", "securityContext": {"privileged": true}}]}});
        assert_eq!(
            pod_security("baseline", "latest", &pod).unwrap_err(),
            "violates PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true, hostPID=true), privileged (container \"runner\" must not set securityContext.privileged=true)"
        );
        assert!(pod_security("privileged", "latest", &pod).is_ok());
        let plain = json!({"spec": {"containers": [{"name": "app"}]}});
        assert!(pod_security("baseline", "latest", &plain).is_ok());
        let why = pod_security("restricted", "latest", &plain).unwrap_err();
        assert!(why.starts_with("violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"app\" must set securityContext.allowPrivilegeEscalation=false)"), "{why}");
    }
}
