// SPDX-License-Identifier: Apache-2.0
//! The REST semantics behind the routes: create, delete (with propagation),
//! and the admission chain, shared by the HTTP layer, the job controller
//! and the library.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::admission::{self, FieldValidation};
use crate::sandbox::State;
use crate::status::ApiError;
use crate::store::{new_uid, Key, Resource, StoreError};

/// `DeleteOptions.propagationPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Orphan,
    Background,
    Foreground,
}

impl Propagation {
    pub fn parse(s: &str) -> Result<Propagation, ApiError> {
        match s {
            "Orphan" => Ok(Propagation::Orphan),
            "Background" => Ok(Propagation::Background),
            "Foreground" => Ok(Propagation::Foreground),
            o => Err(ApiError::bad_request(format!(
                "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"{o}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
            ))),
        }
    }
}

fn store_err(resource: Resource, name: &str) -> impl Fn(StoreError) -> ApiError + '_ {
    move |e| match e {
        StoreError::AlreadyExists => ApiError::already_exists(resource, name),
        StoreError::NotFound => ApiError::not_found(resource, name),
    }
}

/// Decodes a body of `resource` with field validation; returns the
/// warnings a `Warn` validation sends back as `Warning` headers.
pub fn decode(
    resource: Resource,
    body: &Value,
    fv: FieldValidation,
) -> Result<(Value, Vec<String>), ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml".into()));
    }
    if let (Some(k), Some(v)) = (body["kind"].as_str(), body["apiVersion"].as_str()) {
        if k != resource.kind() || v != resource.api_version() {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({})",
                resource.api_version()
            )));
        }
    }
    let unknown = unknown_fields(resource, body)?;
    validate_fields(resource, body.clone(), &unknown, fv)
}

/// Paths in `body` that the schema of `resource` lacks.
pub fn unknown_fields(resource: Resource, body: &Value) -> Result<Vec<String>, ApiError> {
    use k8s_openapi::api::{apps::v1 as apps, batch::v1 as batch, core::v1 as core};
    match resource {
        Resource::Job => admission::unknown_fields::<batch::Job>(body),
        Resource::Pod => admission::unknown_fields::<core::Pod>(body),
        Resource::Namespace => admission::unknown_fields::<core::Namespace>(body),
        Resource::Deployment => admission::unknown_fields::<apps::Deployment>(body),
        Resource::ReplicaSet => admission::unknown_fields::<apps::ReplicaSet>(body),
        Resource::NetworkPolicy => {
            admission::unknown_fields::<k8s_openapi::api::networking::v1::NetworkPolicy>(body)
        }
        Resource::Service => admission::unknown_fields::<core::Service>(body),
        _ => Ok(Vec::new()),
    }
    .map_err(|e| {
        ApiError::bad_request(format!(
            "{} in version \"v1\" cannot be handled as a {}: {e}",
            resource.kind(),
            resource.kind()
        ))
    })
}

/// Field validation of `obj`, whose `unknown` fields were found: `Strict`
/// refuses them, `Warn` drops them with a warning each, `Ignore` drops them.
pub fn validate_fields(
    resource: Resource,
    mut obj: Value,
    unknown: &[String],
    fv: FieldValidation,
) -> Result<(Value, Vec<String>), ApiError> {
    if fv == FieldValidation::Strict && !unknown.is_empty() {
        return Err(ApiError::strict_decoding(resource, unknown));
    }
    for path in unknown {
        remove_path(&mut obj, path);
    }
    let warnings = match fv {
        FieldValidation::Warn => unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect(),
        _ => Vec::new(),
    };
    Ok((obj, warnings))
}

/// Removes `a.b[0].c` from a JSON value.
fn remove_path(v: &mut Value, path: &str) {
    let mut parts: Vec<String> = Vec::new();
    for seg in path.split('.') {
        let mut s = seg;
        while let Some(i) = s.find('[') {
            if i > 0 {
                parts.push(s[..i].to_owned());
            }
            let end = s[i..].find(']').map_or(s.len(), |e| i + e);
            parts.push(s[i..=end.min(s.len() - 1)].to_owned());
            s = &s[(end + 1).min(s.len())..];
        }
        if !s.is_empty() {
            parts.push(s.to_owned());
        }
    }
    let Some((last, init)) = parts.split_last() else {
        return;
    };
    let mut cur = v;
    for p in init {
        cur = if let Some(idx) = p.strip_prefix('[').and_then(|p| p.strip_suffix(']')) {
            &mut cur[idx.parse::<usize>().unwrap_or(usize::MAX)]
        } else {
            &mut cur[p.as_str()]
        };
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last.as_str());
    }
}

/// Prepares metadata from a client's body: the server's own fields go.
pub fn server_owned_metadata(obj: &mut Value, ns: &str, resource: Resource) {
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    if let Some(m) = obj["metadata"].as_object_mut() {
        for k in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "generation",
            "managedFields",
            "selfLink",
        ] {
            m.remove(k);
        }
    }
    if resource.namespaced() {
        obj["metadata"]["namespace"] = json!(ns);
    }
    if obj["metadata"]["name"].as_str().is_none_or(str::is_empty) {
        if let Some(g) = obj["metadata"]["generateName"].as_str() {
            let n = format!("{g}{}", crate::store::random_suffix());
            obj["metadata"]["name"] = json!(n);
        }
    }
}

/// The first steps of every create or replace of a namespaced object:
/// decoded with field validation, its namespace checked and set, the
/// server's own metadata dropped, the namespace open for it. Returns the
/// object, the warnings and the object's name.
pub(crate) fn admit_namespaced(
    state: &State,
    resource: Resource,
    ns: &str,
    body: &Value,
    fv: FieldValidation,
) -> Result<(Value, Vec<String>, String), ApiError> {
    let (mut obj, warnings) = decode(resource, body, fv)?;
    check_namespace_matches(&obj, ns)?;
    server_owned_metadata(&mut obj, ns, resource);
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
    crate::namespaces::open_for(state, ns, resource, &name)?;
    Ok((obj, warnings, name))
}

/// A PUT's body must name the object on the URL.
pub(crate) fn check_name_matches(obj: &Value, name: &str) -> Result<(), ApiError> {
    if obj["metadata"]["name"].as_str() != Some(name) {
        return Err(ApiError::bad_request(
            "the name of the object does not match the name on the URL".into(),
        ));
    }
    Ok(())
}

/// Stores a new object, refusing a name in use as a real server does.
pub(crate) fn store_new(
    store: &mut crate::store::Store,
    resource: Resource,
    obj: Value,
) -> Result<Value, ApiError> {
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
    store.create(resource, obj).map_err(|e| match e {
        StoreError::AlreadyExists => ApiError::already_exists(resource, &name),
        StoreError::NotFound => ApiError::not_found(resource, &name),
    })
}

pub(crate) fn check_namespace_matches(obj: &Value, ns: &str) -> Result<(), ApiError> {
    match obj["metadata"]["namespace"].as_str() {
        Some(n) if !n.is_empty() && n != ns => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        )),
        _ => Ok(()),
    }
}

/// Creates a Job (POST jobs).
pub fn create_job(
    state: &Arc<State>,
    ns: &str,
    body: &Value,
    fv: FieldValidation,
) -> Result<(Value, Vec<String>), ApiError> {
    let (mut job, warnings) = decode(Resource::Job, body, fv)?;
    check_namespace_matches(&job, ns)?;
    server_owned_metadata(&mut job, ns, Resource::Job);
    let name = job["metadata"]["name"].as_str().unwrap_or("").to_owned();
    crate::namespaces::open_for(state, ns, Resource::Job, &name)?;
    let uid = new_uid();
    admission::admit_job(&mut job, &uid)?;
    job["metadata"]["uid"] = json!(uid);
    let mut st = state.lock();
    let created = st
        .create(Resource::Job, job)
        .map_err(store_err(Resource::Job, &name))?;
    Ok((created, warnings))
}

/// Creates a Pod: validation, defaulting, Pod Security, then the kubelet.
pub fn create_pod(state: &Arc<State>, mut pod: Value) -> Result<Value, ApiError> {
    let ns = pod["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_owned();
    server_owned_metadata(&mut pod, &ns, Resource::Pod);
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_owned();
    let namespace = crate::namespaces::open_for(state, &ns, Resource::Pod, &name)?;
    admission::admit_pod(&mut pod)?;
    let labels = &namespace["metadata"]["labels"];
    if let Some(level) = labels["pod-security.kubernetes.io/enforce"].as_str() {
        let version = labels["pod-security.kubernetes.io/enforce-version"]
            .as_str()
            .unwrap_or("latest");
        admission::pod_security(level, version, &pod)
            .map_err(|why| ApiError::admission_forbidden(Resource::Pod, &name, &why))?;
    }
    let created = state
        .lock()
        .create(Resource::Pod, pod)
        .map_err(store_err(Resource::Pod, &name))?;
    crate::kubelet::start_pod(state, &ns, &name);
    Ok(created)
}

/// Deletes a pod gracefully: marked with a deletionTimestamp while the
/// kubelet stops it (SIGTERM, SIGKILL after the grace period), removed
/// once its containers are gone. Grace 0 removes it at once.
pub fn delete_pod(
    state: &State,
    ns: &str,
    name: &str,
    grace: Option<i64>,
) -> Result<Value, ApiError> {
    let key = Key::new(Resource::Pod, ns, name);
    let pod = state
        .lock()
        .get(&key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(Resource::Pod, name))?;
    if !pod["metadata"]["deletionTimestamp"].is_null() && grace != Some(0) {
        return Ok(pod);
    }
    let grace = grace
        .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(30)
        .max(0);
    let marked = state.lock().update(&key, |p| {
        let at = chrono::Utc::now() + chrono::Duration::seconds(grace);
        p["metadata"]["deletionTimestamp"] =
            json!(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        p["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
    });
    let running = crate::kubelet::stop_pod(state, ns, name, grace);
    if !running || grace == 0 {
        if let Ok(pod) = state.lock().remove(&key) {
            crate::kubelet::note_ended_job_pod(state, &pod);
        }
    }
    marked.map_err(store_err(Resource::Pod, name))
}

/// Deletes a Job with the given propagation (a real server's default for
/// `batch/v1` Jobs, when the request names none, is to orphan the pods);
/// its pods are the garbage collector's (`gc`).
pub fn delete_job(
    state: &State,
    ns: &str,
    name: &str,
    policy: Propagation,
) -> Result<Value, ApiError> {
    crate::gc::delete(state, Resource::Job, ns, name, policy).map(|(_, job)| job)
}
