// SPDX-License-Identifier: Apache-2.0
//! API errors as the `Status` objects a real server sends, with its reasons
//! and message wording.

use serde_json::{json, Value};

use crate::store::Resource;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Value,
}

impl ApiError {
    pub fn message(&self) -> String {
        self.message.clone()
    }

    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message,
            "reason": self.reason, "code": self.code,
        });
        if !self.details.is_null() {
            s["details"] = self.details.clone();
        }
        s
    }

    fn new(code: u16, reason: &'static str, message: String, details: Value) -> ApiError {
        ApiError {
            code,
            reason,
            message,
            details,
        }
    }

    pub fn not_found(resource: Resource, name: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", resource.qualified()),
            json!({"name": name, "group": resource.group(), "kind": resource.plural()}),
        )
    }

    pub fn not_found_path() -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
            Value::Null,
        )
    }

    pub fn already_exists(resource: Resource, name: &str) -> ApiError {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", resource.qualified()),
            json!({"name": name, "group": resource.group(), "kind": resource.plural()}),
        )
    }

    /// An update from a stale `resourceVersion` (optimistic concurrency).
    pub fn conflict(resource: Resource, name: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again", resource.qualified()),
            json!({"name": name, "group": resource.group(), "kind": resource.plural()}),
        )
    }

    pub fn bad_request(message: String) -> ApiError {
        ApiError::new(400, "BadRequest", message, Value::Null)
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".into(),
            Value::Null,
        )
    }

    /// A body in a format not read here (`accepted`: the media types that are).
    pub fn unsupported_media_type(accepted: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: {accepted}"),
            Value::Null,
        )
    }

    /// A well-formed request that cannot be carried out (a JSON patch
    /// whose operations do not apply).
    pub fn unprocessable(message: String) -> ApiError {
        ApiError::new(422, "Invalid", message, Value::Null)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized".into(), Value::Null)
    }

    /// A non-resource path the user may not read.
    pub fn forbidden_path(user: &str, path: &str) -> ApiError {
        ApiError::new(
            403,
            "Forbidden",
            format!("forbidden: User \"{user}\" cannot get path \"{path}\""),
            json!({}),
        )
    }

    /// `jobs.batch is forbidden: User "alice" cannot create resource "jobs"
    /// in API group "batch" in the namespace "podtrace"`
    pub fn forbidden(
        user: &str,
        verb: &str,
        group: &str,
        resource: &str,
        name: Option<&str>,
        namespace: Option<&str>,
    ) -> ApiError {
        let (plural, _) = resource.split_once('/').unwrap_or((resource, ""));
        let qualified = if group.is_empty() {
            plural.to_owned()
        } else {
            format!("{plural}.{group}")
        };
        let subject = match name {
            Some(n) => format!("{qualified} \"{n}\""),
            None => qualified,
        };
        let scope = match namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".into(),
        };
        ApiError::new(
            403,
            "Forbidden",
            format!(
                "{subject} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{group}\" {scope}"
            ),
            json!({"name": name.unwrap_or(""), "group": group, "kind": plural}),
        )
    }

    /// Admission (e.g. Pod Security) refused the object.
    pub fn admission_forbidden(resource: Resource, name: &str, why: &str) -> ApiError {
        ApiError::new(
            403,
            "Forbidden",
            format!("{} \"{name}\" is forbidden: {why}", resource.qualified()),
            json!({"name": name, "group": resource.group(), "kind": resource.plural()}),
        )
    }

    /// `Job.batch "x" is invalid: [a: Required value, b: Invalid value: …]`
    pub fn invalid(
        resource: Resource,
        name: &str,
        causes: &[(String, String, String)],
    ) -> ApiError {
        let kind = match resource.group() {
            "" => resource.kind().to_owned(),
            g => format!("{}.{g}", resource.kind()),
        };
        let texts: Vec<String> = causes
            .iter()
            .map(|(field, _, msg)| format!("{field}: {msg}"))
            .collect();
        let joined = if texts.len() == 1 {
            texts[0].clone()
        } else {
            format!("[{}]", texts.join(", "))
        };
        ApiError::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {joined}"),
            json!({
                "name": name, "group": resource.group(), "kind": resource.kind(),
                "causes": causes.iter().map(|(field, reason, msg)| json!({
                    "reason": reason, "message": msg, "field": field,
                })).collect::<Vec<_>>(),
            }),
        )
    }

    /// Strict field validation: the body has fields the schema lacks.
    pub fn strict_decoding(resource: Resource, unknown: &[String]) -> ApiError {
        let list: Vec<String> = unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect();
        ApiError::new(
            400,
            "BadRequest",
            format!(
                "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                resource.kind(),
                resource.api_version().rsplit('/').next().unwrap_or("v1"),
                resource.kind(),
                list.join(", ")
            ),
            Value::Null,
        )
    }

    pub fn gone(rv: u64, oldest: u64) -> ApiError {
        ApiError::new(
            410,
            "Expired",
            format!("too old resource version: {rv} ({oldest})"),
            Value::Null,
        )
    }
}
