// SPDX-License-Identifier: Apache-2.0
//! OpenAPI v3 for what the server serves: `/openapi/v3` lists one document
//! per group-version, `/openapi/v3/<api/v1|apis/G/V>` is that document —
//! the paths and verbs answered here, with schemas generated from
//! k8s-openapi's types. kubectl reads it before `apply`/`create`: finding
//! `fieldValidation` on a kind's PATCH, it leaves validation to the server
//! (`fieldValidation=Strict`); without a document it refuses to go on
//! unless given `--validate=false`. `kubectl explain` reads the schemas.
//! (v2 is not served: kubectl asks for it only when v3 is missing, and
//! wants it in protobuf.)

use std::collections::BTreeMap;
use std::hash::{Hash as _, Hasher as _};
use std::sync::OnceLock;

use k8s_openapi::api::{apps, authentication, authorization, batch, core, discovery, networking};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::schemars::{generate::SchemaSettings, JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

use crate::discovery::{verbs, GROUPS};
use crate::store::Resource;

/// Each group-version's path (`api/v1`, `apis/batch/v1`) → (document, hash).
fn documents() -> &'static BTreeMap<String, (Value, String)> {
    static DOCS: OnceLock<BTreeMap<String, (Value, String)>> = OnceLock::new();
    DOCS.get_or_init(|| {
        std::iter::once(("", "v1"))
            .chain(GROUPS)
            .map(|(g, v)| {
                let doc = document(g, v);
                let mut h = std::collections::hash_map::DefaultHasher::new();
                doc.to_string().hash(&mut h);
                (gv_path(g, v), (doc, format!("{:016X}", h.finish())))
            })
            .collect()
    })
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `GET /openapi/v3`.
pub fn root() -> Value {
    let paths: Map<String, Value> = documents()
        .iter()
        .map(|(p, (_, hash))| {
            (
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash}")}),
            )
        })
        .collect();
    json!({ "paths": paths })
}

/// `GET /openapi/v3/<path>`, or `None` if no such group-version is served.
pub fn group_version(path: &str) -> Option<Value> {
    documents().get(path).map(|(doc, _)| doc.clone())
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

/// A `$ref` to the schema of `r` (its list's with `list`), generated.
fn kind_ref(gen: &mut SchemaGenerator, r: Resource, list: bool) -> Value {
    fn of<T: JsonSchema>(gen: &mut SchemaGenerator) -> (Value, String) {
        (gen.subschema_for::<T>().to_value(), T::schema_name().into())
    }
    let (item, name) = match r {
        Resource::Namespace => of::<core::v1::Namespace>(gen),
        Resource::Node => of::<core::v1::Node>(gen),
        Resource::Pod => of::<core::v1::Pod>(gen),
        Resource::Job => of::<batch::v1::Job>(gen),
        Resource::Event => of::<core::v1::Event>(gen),
        Resource::Service => of::<core::v1::Service>(gen),
        Resource::NetworkPolicy => of::<networking::v1::NetworkPolicy>(gen),
        Resource::Deployment => of::<apps::v1::Deployment>(gen),
        Resource::ReplicaSet => of::<apps::v1::ReplicaSet>(gen),
        Resource::EndpointSlice => of::<discovery::v1::EndpointSlice>(gen),
    };
    if !list {
        return item;
    }
    // k8s-openapi's `List<T>` has no schema of its own: built as the
    // real `…List` kinds are.
    let list_name = format!("{name}List");
    let list_meta = gen.subschema_for::<meta::ListMeta>().to_value();
    gen.definitions_mut().insert(
        list_name.clone(),
        json!({
            "description": format!("{}List is a list of {}.", r.kind(), r.kind()),
            "type": "object",
            "required": ["items"],
            "properties": {
                "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                "items": {"type": "array", "items": item},
                "metadata": {"allOf": [list_meta]},
            },
        }),
    );
    json!({"$ref": format!("#/components/schemas/{list_name}")})
}

fn query(name: &str, kind: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": kind}, "uniqueItems": true})
}

fn path_param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": format!("{name} of the object"),
           "schema": {"type": "string"}, "uniqueItems": true})
}

fn write_params() -> Vec<Value> {
    vec![
        query("dryRun", "string", "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed"),
        query("fieldManager", "string", "fieldManager is a name associated with the actor or entity that is making these changes."),
        query("fieldValidation", "string", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore - Warn (default) - Strict"),
    ]
}

fn list_params() -> Vec<Value> {
    vec![
        query("allowWatchBookmarks", "boolean", "requests watch events with type \"BOOKMARK\"."),
        query("fieldSelector", "string", "A selector to restrict the list of returned objects by their fields."),
        query("labelSelector", "string", "A selector to restrict the list of returned objects by their labels."),
        query("resourceVersion", "string", "resourceVersion sets a constraint on what resource versions a request may be served from."),
        query("sendInitialEvents", "boolean", "requests a watch to begin with synthetic events for the current state."),
        query("timeoutSeconds", "integer", "Timeout for the list/watch call."),
        query("watch", "boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications."),
    ]
}

fn json_content(schema: Value) -> Value {
    json!({"application/json": {"schema": schema}})
}

/// One operation: `action` as `x-kubernetes-action` says it.
fn op(
    id: String,
    action: &str,
    gvk: &Value,
    params: Vec<Value>,
    code: &str,
    response: Value,
) -> Value {
    json!({
        "operationId": id, "parameters": params,
        "responses": {code: {"description": "OK", "content": response},
                      "401": {"description": "Unauthorized"}},
        "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk,
    })
}

/// The OpenAPI document of one group-version.
fn document(group: &str, version: &str) -> Value {
    let mut gen = SchemaSettings::openapi3().into_generator();
    let status = gen.subschema_for::<meta::Status>().to_value();
    let mut paths = Map::new();
    let prefix = format!("/{}", gv_path(group, version));
    for r in Resource::ALL.into_iter().filter(|r| r.group() == group) {
        let item = kind_ref(&mut gen, r, false);
        let list = kind_ref(&mut gen, r, true);
        let gvk = gvk(group, version, r.kind());
        let scope = if r.namespaced() { "Namespaced" } else { "" };
        let (collection, all) = if r.namespaced() {
            (
                format!("{prefix}/namespaces/{{namespace}}/{}", r.plural()),
                Some(format!("{prefix}/{}", r.plural())),
            )
        } else {
            (format!("{prefix}/{}", r.plural()), None)
        };
        let mut coll = Map::new();
        let mut obj = Map::new();
        for verb in verbs(r) {
            let kind = r.kind();
            match *verb {
                "list" => {
                    coll.insert(
                        "get".into(),
                        op(
                            format!("list{scope}{kind}"),
                            "list",
                            &gvk,
                            list_params(),
                            "200",
                            json_content(list.clone()),
                        ),
                    );
                    if let Some(all) = &all {
                        let o = op(
                            format!("list{kind}ForAllNamespaces"),
                            "list",
                            &gvk,
                            list_params(),
                            "200",
                            json_content(list.clone()),
                        );
                        paths.insert(all.clone(), json!({"get": o}));
                    }
                }
                "create" => {
                    let mut o = op(
                        format!("create{scope}{kind}"),
                        "post",
                        &gvk,
                        write_params(),
                        "201",
                        json_content(item.clone()),
                    );
                    o["requestBody"] =
                        json!({"required": true, "content": json_content(item.clone())});
                    coll.insert("post".into(), o);
                }
                "deletecollection" => {
                    let mut params = list_params();
                    params.push(query(
                        "propagationPolicy",
                        "string",
                        "Whether and how garbage collection will be performed.",
                    ));
                    coll.insert(
                        "delete".into(),
                        op(
                            format!("deletecollection{scope}{kind}"),
                            "deletecollection",
                            &gvk,
                            params,
                            "200",
                            json_content(status.clone()),
                        ),
                    );
                }
                "get" => {
                    obj.insert(
                        "get".into(),
                        op(
                            format!("read{scope}{kind}"),
                            "get",
                            &gvk,
                            vec![],
                            "200",
                            json_content(item.clone()),
                        ),
                    );
                }
                "delete" => {
                    let params = vec![
                        query(
                            "gracePeriodSeconds",
                            "integer",
                            "The duration in seconds before the object should be deleted.",
                        ),
                        query(
                            "propagationPolicy",
                            "string",
                            "Whether and how garbage collection will be performed.",
                        ),
                    ];
                    obj.insert(
                        "delete".into(),
                        op(
                            format!("delete{scope}{kind}"),
                            "delete",
                            &gvk,
                            params,
                            "200",
                            json_content(item.clone()),
                        ),
                    );
                }
                "patch" => {
                    let mut o = op(
                        format!("patch{scope}{kind}"),
                        "patch",
                        &gvk,
                        write_params(),
                        "200",
                        json_content(item.clone()),
                    );
                    let body = json!({"schema": {"type": "object"}});
                    o["requestBody"] = json!({"required": true, "content": {
                        "application/json-patch+json": body, "application/merge-patch+json": body,
                        "application/strategic-merge-patch+json": body}});
                    obj.insert("patch".into(), o);
                }
                "update" => {
                    let mut o = op(
                        format!("replace{scope}{kind}"),
                        "put",
                        &gvk,
                        write_params(),
                        "200",
                        json_content(item.clone()),
                    );
                    o["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": item.clone()}}});
                    obj.insert("put".into(), o);
                }
                _ => {}
            }
        }
        let mut params = vec![path_param("name")];
        if r.namespaced() {
            coll.insert("parameters".into(), json!([path_param("namespace")]));
            params.push(path_param("namespace"));
        }
        obj.insert("parameters".into(), Value::from(params.clone()));
        paths.insert(collection.clone(), Value::Object(coll));
        if r == Resource::Pod {
            let log = vec![
                query(
                    "container",
                    "string",
                    "The container for which to stream logs.",
                ),
                query("follow", "boolean", "Follow the log stream of the pod."),
                query(
                    "previous",
                    "boolean",
                    "Return previous terminated container logs.",
                ),
                query(
                    "tailLines",
                    "integer",
                    "The number of lines from the end of the logs to show.",
                ),
                query(
                    "timestamps",
                    "boolean",
                    "Add an RFC3339 timestamp at the beginning of every line.",
                ),
            ];
            let o = op(
                "readNamespacedPodLog".into(),
                "get",
                &gvk,
                log,
                "200",
                json!({"text/plain": {"schema": {"type": "string"}}}),
            );
            paths.insert(
                format!("{collection}/{{name}}/log"),
                json!({"get": o, "parameters": params}),
            );
        }
        paths.insert(format!("{collection}/{{name}}"), Value::Object(obj));
    }
    let review = match group {
        "authorization.k8s.io" => Some((
            "SelfSubjectAccessReview",
            gen.subschema_for::<authorization::v1::SelfSubjectAccessReview>()
                .to_value(),
        )),
        "authentication.k8s.io" => Some((
            "SelfSubjectReview",
            gen.subschema_for::<authentication::v1::SelfSubjectReview>()
                .to_value(),
        )),
        _ => None,
    };
    if let Some((kind, schema)) = review {
        let mut o = op(
            format!("create{kind}"),
            "post",
            &gvk(group, version, kind),
            write_params(),
            "201",
            json_content(schema.clone()),
        );
        o["requestBody"] = json!({"required": true, "content": json_content(schema)});
        paths.insert(
            format!("{prefix}/{}s", kind.to_lowercase()),
            json!({"post": o}),
        );
    }
    let mut schemas = gen.take_definitions(true);
    mark_kinds(&mut schemas, group, version);
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": crate::discovery::version()["gitVersion"]},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// `x-kubernetes-group-version-kind` on the schemas of this group-version's
/// kinds, which is how kubectl (`explain`) finds a kind's schema.
fn mark_kinds(schemas: &mut Map<String, Value>, group: &str, version: &str) {
    let prefix = match group {
        "" => "io.k8s.api.core.v1.".to_owned(),
        g => format!("io.k8s.api.{}.{version}.", g.split('.').next().unwrap_or(g)),
    };
    for (name, schema) in schemas.iter_mut() {
        if let Some(kind) = name.strip_prefix(&prefix) {
            let is_kind = Resource::ALL.iter().any(|r| {
                r.group() == group && (r.kind() == kind || format!("{}List", r.kind()) == kind)
            }) || kind.starts_with("SelfSubject");
            if is_kind {
                schema["x-kubernetes-group-version-kind"] = json!([gvk(group, version, kind)]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_group_version_has_a_document_with_patch_and_field_validation() {
        let root = super::root();
        for p in ["api/v1", "apis/batch/v1", "apis/networking.k8s.io/v1"] {
            let url = root["paths"][p]["serverRelativeURL"].as_str().unwrap();
            assert!(url.starts_with(&format!("/openapi/v3/{p}?hash=")), "{url}");
            let doc = super::group_version(p).unwrap();
            let patches: Vec<_> = doc["paths"]
                .as_object()
                .unwrap()
                .values()
                .filter_map(|p| p.get("patch"))
                .collect();
            assert!(!patches.is_empty(), "{p}");
            for op in patches {
                assert!(op["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|q| q["name"] == "fieldValidation"));
            }
        }
        let core = super::group_version("api/v1").unwrap();
        let pod = &core["components"]["schemas"]["io.k8s.api.core.v1.Pod"];
        assert_eq!(pod["x-kubernetes-group-version-kind"][0]["kind"], "Pod");
        assert!(pod["properties"]["spec"].is_object());
        assert!(core["components"]["schemas"]["io.k8s.api.core.v1.PodList"].is_object());
        assert!(super::group_version("apis/apps/v1").is_some());
        assert!(super::group_version("apis/policy/v1").is_none());
    }
}
