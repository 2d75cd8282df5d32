// SPDX-License-Identifier: Apache-2.0
//! The HTTP side of the API server: connections, authentication and RBAC,
//! routing, lists/gets (JSON or Table), watch streams and log streams.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};

use crate::admission::FieldValidation;
use crate::api::{self, Propagation};
use crate::discovery;
use crate::rbac::User;
use crate::sandbox::State;
use crate::selectors::{allowed_fields, FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::store::{Change, Key, Resource};

type Body = UnsyncBoxBody<Bytes, std::io::Error>;
type Chunk = Result<Bytes, std::io::Error>;

/// Serves until aborted; aborting also ends every open connection.
pub async fn serve(listener: TcpListener, tls: tokio_rustls::TlsAcceptor, state: Arc<State>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        while conns.try_join_next().is_some() {}
        let state = state.clone();
        let tls = tls.clone();
        conns.spawn(async move {
            let Ok(stream) = tls.accept(stream).await else {
                return;
            };
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(state, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

enum Reply {
    Json(u16, Value, Vec<String>),
    Text(u16, String),
    Stream(&'static str, mpsc::Receiver<Chunk>),
}

impl From<ApiError> for Reply {
    fn from(e: ApiError) -> Reply {
        Reply::Json(e.code, e.to_status(), Vec::new())
    }
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn into_response(reply: Reply) -> Response<Body> {
    let (code, ctype, body, warnings) = match reply {
        Reply::Json(code, v, w) => (code, "application/json", full(format!("{v}\n")), w),
        Reply::Text(code, t) => (code, "text/plain", full(t), Vec::new()),
        Reply::Stream(ctype, rx) => {
            let stream = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item.map(Frame::data), rx))
            });
            (
                200,
                ctype,
                StreamBody::new(stream).boxed_unsync(),
                Vec::new(),
            )
        }
    };
    let mut resp = Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("Content-Type", ctype)
        .header("Cache-Control", "no-cache, private");
    for w in warnings {
        resp = resp.header("Warning", format!("299 - {w:?}"));
    }
    resp.body(body).unwrap_or_else(|_| Response::new(full("")))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Req {
    method: Method,
    path: Vec<String>,
    query: HashMap<String, String>,
    accept: String,
    content_type: String,
    body: Bytes,
    user: User,
}

impl Req {
    fn q(&self, k: &str) -> Option<&str> {
        self.query.get(k).map(String::as_str)
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.q(k), Some("true") | Some("1"))
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let header = |k: &str| {
        req.headers()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    *state
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(header("user-agent"))
        .or_default() += 1;
    state
        .request_log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(crate::sandbox::ApiRequest {
            agent: header("user-agent"),
            method: method.to_string(),
            uri: uri
                .path_and_query()
                .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned()),
        });
    let auth = header("authorization");
    let accept = header("accept");
    let content_type = header("content-type");
    let user = match auth.strip_prefix("Bearer ") {
        Some(token) => match state
            .rbac
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .authenticate(token.trim())
        {
            Some(u) => u,
            None => return into_response(ApiError::unauthorized().into()),
        },
        None => User::anonymous(),
    };
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return into_response(ApiError::bad_request(format!("reading the body: {e}")).into())
        }
    };
    let query = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let path = uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let r = Req {
        method,
        path,
        query,
        accept,
        content_type,
        body,
        user,
    };
    tracing::debug!(method = %r.method, path = %uri, user = %r.user.name, "request");
    let reply = route(&state, &r).await.unwrap_or_else(Reply::from);
    into_response(reply)
}

fn json_body(r: &Req) -> Result<Value, ApiError> {
    if r.body.is_empty() {
        return Ok(Value::Null);
    }
    if r.body.starts_with(b"k8s\0") {
        // Protobuf, from kubectl's typed clients: read for the kinds they
        // send it for; JSON or YAML for the rest.
        return crate::protobuf::decode(&r.body)
            .ok_or_else(|| ApiError::unsupported_media_type("application/json, application/yaml"));
    }
    serde_json::from_slice(&r.body)
        .or_else(|_| serde_yaml::from_slice::<Value>(&r.body))
        .map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })
}

async fn route(state: &Arc<State>, r: &Req) -> Result<Reply, ApiError> {
    let p: Vec<&str> = r.path.iter().map(String::as_str).collect();
    let is_get = r.method == Method::GET;
    match p.as_slice() {
        ["version"] if is_get => return Ok(Reply::Json(200, discovery::version(), vec![])),
        ["healthz"] | ["readyz"] | ["livez"] => return Ok(Reply::Text(200, "ok".into())),
        _ => {}
    }
    if r.user.name == "system:anonymous" {
        // What a default cluster lets the unauthenticated do: nothing but
        // /version and health (handled above).
        return Err(ApiError::forbidden_path(
            &r.user.name,
            &format!("/{}", r.path.join("/")),
        ));
    }
    // What RBAC's system:discovery role lets every authenticated user read.
    match p.as_slice() {
        ["openapi", "v3"] if is_get => return Ok(Reply::Json(200, crate::openapi::root(), vec![])),
        ["openapi", "v3", gv @ ..] if is_get => {
            return crate::openapi::group_version(&gv.join("/"))
                .map(|d| Reply::Json(200, d, vec![]))
                .ok_or_else(ApiError::not_found_path)
        }
        _ => {}
    }
    // Aggregated discovery is refused by content type: kubectl then falls
    // back to the legacy documents below.
    let (group, version, rest): (&str, &str, &[&str]) = match p.as_slice() {
        ["api"] if is_get => return Ok(Reply::Json(200, discovery::api_versions(), vec![])),
        ["apis"] if is_get => return Ok(Reply::Json(200, discovery::api_groups(), vec![])),
        ["api", v] if is_get => {
            return discovery::resources("", v)
                .map(|d| Reply::Json(200, d, vec![]))
                .ok_or_else(ApiError::not_found_path)
        }
        ["apis", g, v] if is_get => {
            return discovery::resources(g, v)
                .map(|d| Reply::Json(200, d, vec![]))
                .ok_or_else(ApiError::not_found_path)
        }
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::not_found_path()),
    };
    if version != "v1" {
        return Err(ApiError::not_found_path());
    }
    match (group, rest) {
        ("authorization.k8s.io", ["selfsubjectaccessreviews"]) if r.method == Method::POST => {
            return access_review(r)
        }
        ("authentication.k8s.io", ["selfsubjectreviews"]) if r.method == Method::POST => {
            return Ok(Reply::Json(
                201,
                json!({
                    "kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
                    "metadata": {"creationTimestamp": null},
                    "status": {"userInfo": {"username": r.user.name, "groups": r.user.groups}},
                }),
                vec![],
            ))
        }
        _ => {}
    }
    // (namespace, resource, name, subresource)
    let (ns, plural, name, sub): (Option<&str>, &str, Option<&str>, Option<&str>) = match rest {
        ["namespaces", ns, res] => (Some(*ns), *res, None, None),
        ["namespaces", ns, res, name] => (Some(*ns), *res, Some(*name), None),
        ["namespaces", ns, res, name, sub] => (Some(*ns), *res, Some(*name), Some(*sub)),
        [res] => (None, *res, None, None),
        [res, name] => (None, *res, Some(*name), None),
        [res, name, sub] => (None, *res, Some(*name), Some(*sub)),
        _ => return Err(ApiError::not_found_path()),
    };
    let resource = Resource::from_path(group, plural).ok_or_else(ApiError::not_found_path)?;
    if !resource.namespaced() && ns.is_some() {
        return Err(ApiError::not_found_path());
    }
    let verb = match (&r.method, name, sub) {
        (&Method::GET, None, _) if r.flag("watch") => "watch",
        (&Method::GET, None, _) => "list",
        (&Method::GET, Some(_), _) => "get",
        (&Method::POST, None, None) => "create",
        (&Method::DELETE, Some(_), None) => "delete",
        (&Method::DELETE, None, None) => "deletecollection",
        (&Method::PUT, Some(_), _) => "update",
        (&Method::PATCH, Some(_), _) => "patch",
        _ => return Err(ApiError::method_not_allowed()),
    };
    let rbac_resource = match sub {
        Some(s) => format!("{plural}/{s}"),
        None => plural.to_owned(),
    };
    if !r.user.can(verb, group, &rbac_resource, ns) {
        return Err(ApiError::forbidden(
            &r.user.name,
            verb,
            group,
            &rbac_resource,
            name,
            ns,
        ));
    }
    match (verb, sub) {
        ("watch", _) => watch(state, r, resource, ns),
        ("list", _) => list(state, r, resource, ns),
        ("get", None) => get(state, r, resource, ns.unwrap_or(""), name.unwrap_or("")),
        ("get", Some("log")) if resource == Resource::Pod => {
            logs(state, r, ns.unwrap_or(""), name.unwrap_or(""))
        }
        ("get", Some("status")) => get(state, r, resource, ns.unwrap_or(""), name.unwrap_or("")),
        ("get" | "patch" | "update", Some("scale")) => crate::apps::scale::handle(
            state,
            verb,
            resource,
            ns.unwrap_or(""),
            name.unwrap_or(""),
            &r.content_type,
            &r.body,
        )
        .map(|s| Reply::Json(200, s, vec![])),
        ("create", None) => create(state, r, resource, ns.unwrap_or("")),
        ("delete", None) => delete(state, r, resource, ns.unwrap_or(""), name.unwrap_or("")),
        ("deletecollection", None) => delete_collection(state, r, resource, ns),
        ("patch", None) if discovery::verbs(resource).contains(&"patch") => {
            let fv = FieldValidation::parse(r.q("fieldValidation"))?;
            let (obj, warnings) = crate::patch::patch(
                state,
                resource,
                ns.unwrap_or(""),
                name.unwrap_or(""),
                &r.content_type,
                &r.body,
                fv,
            )?;
            Ok(Reply::Json(200, obj, warnings))
        }
        ("update", None) if matches!(resource, Resource::Deployment | Resource::ReplicaSet) => {
            let fv = FieldValidation::parse(r.q("fieldValidation"))?;
            let (ns, name) = (ns.unwrap_or(""), name.unwrap_or(""));
            let (obj, warnings) =
                crate::apps::api::replace(state, resource, ns, name, &json_body(r)?, fv)?;
            Ok(Reply::Json(200, obj, warnings))
        }
        ("update", None) if matches!(resource, Resource::Service | Resource::NetworkPolicy) => {
            let fv = FieldValidation::parse(r.q("fieldValidation"))?;
            let replace = match resource {
                Resource::Service => crate::services::api::replace,
                _ => crate::netpol::api::replace,
            };
            let (obj, warnings) = replace(
                state,
                ns.unwrap_or(""),
                name.unwrap_or(""),
                &json_body(r)?,
                fv,
            )?;
            Ok(Reply::Json(200, obj, warnings))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn access_review(r: &Req) -> Result<Reply, ApiError> {
    let body = json_body(r)?;
    let spec = body["spec"].clone();
    let a = &spec["resourceAttributes"];
    let allowed = if a.is_object() {
        let res = match a["subresource"].as_str().filter(|s| !s.is_empty()) {
            Some(sub) => format!("{}/{sub}", a["resource"].as_str().unwrap_or("")),
            None => a["resource"].as_str().unwrap_or("").to_owned(),
        };
        let ns = a["namespace"].as_str().filter(|s| !s.is_empty());
        r.user.can(
            a["verb"].as_str().unwrap_or(""),
            a["group"].as_str().unwrap_or(""),
            &res,
            ns,
        )
    } else {
        r.user.is_admin()
    };
    let mut status = json!({"allowed": allowed});
    if allowed && r.user.groups.iter().any(|g| g == "system:masters") {
        status["reason"] = json!("RBAC: allowed by ClusterRoleBinding \"cluster-admin\" of ClusterRole \"cluster-admin\" to Group \"system:masters\"");
    } else if allowed {
        status["reason"] = json!(format!(
            "RBAC: allowed by RoleBinding for User \"{}\"",
            r.user.name
        ));
    }
    Ok(Reply::Json(
        201,
        json!({
            "kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": null}, "spec": spec, "status": status,
        }),
        vec![],
    ))
}

struct Filter {
    ns: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn new(r: &Req, resource: Resource, ns: Option<&str>) -> Result<Filter, ApiError> {
        Ok(Filter {
            ns: ns.map(str::to_owned),
            labels: LabelSelector::parse(r.q("labelSelector").unwrap_or(""))
                .map_err(ApiError::bad_request)?,
            fields: FieldSelector::parse(
                r.q("fieldSelector").unwrap_or(""),
                allowed_fields(resource.kind()),
            )
            .map_err(ApiError::bad_request)?,
        })
    }

    fn matches(&self, o: &Value) -> bool {
        self.ns
            .as_deref()
            .is_none_or(|ns| o["metadata"]["namespace"].as_str() == Some(ns))
            && self.labels.matches(&o["metadata"]["labels"])
            && self.fields.matches(o)
    }
}

fn wants_table(r: &Req) -> bool {
    r.accept.contains("as=Table")
}

fn list(state: &State, r: &Req, resource: Resource, ns: Option<&str>) -> Result<Reply, ApiError> {
    let filter = Filter::new(r, resource, ns)?;
    let (items, rv) = {
        let st = state.lock();
        let items: Vec<Value> = st
            .list(resource, ns)
            .into_iter()
            .filter(|o| filter.matches(o))
            .collect();
        (items, st.resource_version())
    };
    if wants_table(r) {
        return Ok(Reply::Json(
            200,
            discovery::table(
                resource,
                &items,
                rv,
                r.q("includeObject").unwrap_or("Metadata"),
            ),
            vec![],
        ));
    }
    Ok(Reply::Json(
        200,
        json!({
            "kind": format!("{}List", resource.kind()), "apiVersion": resource.api_version(),
            "metadata": {"resourceVersion": rv.to_string()}, "items": items,
        }),
        vec![],
    ))
}

fn get(
    state: &State,
    r: &Req,
    resource: Resource,
    ns: &str,
    name: &str,
) -> Result<Reply, ApiError> {
    let (obj, rv) = {
        let st = state.lock();
        (
            st.get(&Key::new(resource, ns, name)).cloned(),
            st.resource_version(),
        )
    };
    let obj = obj.ok_or_else(|| ApiError::not_found(resource, name))?;
    if wants_table(r) {
        return Ok(Reply::Json(
            200,
            discovery::table(
                resource,
                &[obj],
                rv,
                r.q("includeObject").unwrap_or("Metadata"),
            ),
            vec![],
        ));
    }
    Ok(Reply::Json(200, obj, vec![]))
}

fn create(state: &Arc<State>, r: &Req, resource: Resource, ns: &str) -> Result<Reply, ApiError> {
    let body = json_body(r)?;
    let fv = FieldValidation::parse(r.q("fieldValidation"))?;
    let dry_run = r.q("dryRun") == Some("All");
    match resource {
        Resource::Job => {
            if dry_run {
                let (mut job, w) = api::decode(Resource::Job, &body, fv)?;
                crate::admission::admit_job(&mut job, &crate::store::new_uid())?;
                return Ok(Reply::Json(201, job, w));
            }
            let (job, warnings) = api::create_job(state, ns, &body, fv)?;
            Ok(Reply::Json(201, job, warnings))
        }
        Resource::Pod => {
            let (mut pod, warnings) = api::decode(Resource::Pod, &body, fv)?;
            if pod["metadata"]["namespace"]
                .as_str()
                .is_some_and(|n| !n.is_empty() && n != ns)
            {
                return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request".into()));
            }
            pod["metadata"]["namespace"] = json!(ns);
            let created = api::create_pod(state, pod)?;
            Ok(Reply::Json(201, created, warnings))
        }
        Resource::Namespace if dry_run => {
            let (mut ns, w) = api::decode(resource, &body, fv)?;
            api::server_owned_metadata(&mut ns, "", resource);
            crate::admission::admit_namespace(&mut ns)?;
            Ok(Reply::Json(201, ns, w))
        }
        Resource::Namespace => {
            let (created, warnings) = crate::namespaces::create(state, &body, fv)?;
            Ok(Reply::Json(201, created, warnings))
        }
        Resource::NetworkPolicy => {
            let (obj, warnings) = crate::netpol::api::create(state, ns, &body, fv, dry_run)?;
            Ok(Reply::Json(201, obj, warnings))
        }
        Resource::Deployment | Resource::ReplicaSet => {
            let (obj, w) = crate::apps::api::create(state, resource, ns, &body, fv, dry_run)?;
            Ok(Reply::Json(201, obj, w))
        }
        Resource::Service => {
            let (obj, warnings) = crate::services::api::create(state, ns, &body, fv, dry_run)?;
            Ok(Reply::Json(201, obj, warnings))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn delete(
    state: &State,
    r: &Req,
    resource: Resource,
    ns: &str,
    name: &str,
) -> Result<Reply, ApiError> {
    let body = json_body(r)?;
    let policy = body["propagationPolicy"]
        .as_str()
        .or(r.q("propagationPolicy"))
        .map(Propagation::parse)
        .transpose()?;
    let orphan = body["orphanDependents"]
        .as_bool()
        .or(r.q("orphanDependents").map(|v| v == "true"));
    let grace = body["gracePeriodSeconds"]
        .as_i64()
        .or(r.q("gracePeriodSeconds").and_then(|g| g.parse().ok()));
    match resource {
        Resource::Pod => Ok(Reply::Json(
            200,
            api::delete_pod(state, ns, name, grace)?,
            vec![],
        )),
        Resource::Job => {
            // batch/v1 Jobs default to orphaning their pods (legacy GC policy).
            let policy = policy.unwrap_or(match orphan {
                Some(false) => Propagation::Background,
                _ => Propagation::Orphan,
            });
            let obj = api::delete_job(state, ns, name, policy)?;
            let code = if policy == Propagation::Foreground {
                202
            } else {
                200
            };
            Ok(Reply::Json(code, obj, vec![]))
        }
        Resource::Namespace => Ok(Reply::Json(
            200,
            crate::namespaces::delete(state, name)?,
            vec![],
        )),
        Resource::NetworkPolicy => Ok(Reply::Json(
            200,
            crate::netpol::api::delete(state, ns, name)?,
            vec![],
        )),
        Resource::Deployment | Resource::ReplicaSet => {
            let policy = policy.unwrap_or(match orphan {
                Some(true) => Propagation::Orphan,
                _ => Propagation::Background,
            });
            let (code, obj) = crate::gc::delete(state, resource, ns, name, policy)?;
            Ok(Reply::Json(code, obj, vec![]))
        }
        Resource::Service => Ok(Reply::Json(
            200,
            crate::services::api::delete(state, ns, name)?,
            vec![],
        )),
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// DELETE on a collection: each selected object deleted as by DELETE on
/// it; the answer lists them.
fn delete_collection(
    state: &State,
    r: &Req,
    resource: Resource,
    ns: Option<&str>,
) -> Result<Reply, ApiError> {
    let filter = Filter::new(r, resource, ns)?;
    let targets: Vec<Value> = state
        .lock()
        .list(resource, ns)
        .into_iter()
        .filter(|o| filter.matches(o))
        .collect();
    let mut items = Vec::new();
    for o in targets {
        let ns = o["metadata"]["namespace"].as_str().unwrap_or("").to_owned();
        let name = o["metadata"]["name"].as_str().unwrap_or("").to_owned();
        match delete(state, r, resource, &ns, &name) {
            Ok(Reply::Json(_, obj, _)) => items.push(obj),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
            Ok(_) => {}
        }
    }
    let rv = state.lock().resource_version();
    Ok(Reply::Json(
        200,
        json!({
            "kind": format!("{}List", resource.kind()), "apiVersion": resource.api_version(),
            "metadata": {"resourceVersion": rv.to_string()}, "items": items,
        }),
        vec![],
    ))
}

/// Sends one JSON line; `false` once the client has gone.
async fn send(tx: &mpsc::Sender<Chunk>, v: Value) -> bool {
    tx.send(Ok(Bytes::from(format!("{v}\n")))).await.is_ok()
}

fn watch(
    state: &Arc<State>,
    r: &Req,
    resource: Resource,
    ns: Option<&str>,
) -> Result<Reply, ApiError> {
    let filter = Filter::new(r, resource, ns)?;
    let timeout = r
        .q("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(1800);
    let bookmarks = r.flag("allowWatchBookmarks");
    let table = wants_table(r).then(|| r.q("includeObject").unwrap_or("Metadata").to_owned());
    let initial_events = r.flag("sendInitialEvents");
    let rv_param = r.q("resourceVersion").unwrap_or("");
    let (tx, rx) = mpsc::channel::<Chunk>(256);
    // What to send first, and from where to follow, taken under one lock.
    let (initial, past, live, start_rv) = {
        let st = state.lock();
        if rv_param.is_empty() || rv_param == "0" || initial_events {
            let items: Vec<Value> = st
                .list(resource, ns)
                .into_iter()
                .filter(|o| filter.matches(o))
                .collect();
            let rv = st.resource_version();
            let (_, live) = st.watch_from(rv).unwrap_or((Vec::new(), st.subscribe()));
            (items, Vec::new(), live, rv)
        } else {
            let rv: u64 = rv_param.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid resource version: {rv_param}"))
            })?;
            match st.watch_from(rv) {
                Some((past, live)) => (Vec::new(), past, live, rv),
                None => {
                    // A real server answers 200 and a single ERROR event.
                    let gone = ApiError::gone(rv, st.compacted() + 1).to_status();
                    drop(st);
                    let _ = tx.try_send(Ok(Bytes::from(format!(
                        "{}\n",
                        json!({"type": "ERROR", "object": gone})
                    ))));
                    return Ok(Reply::Stream("application/json", rx));
                }
            }
        }
    };
    let mut drops = state.drop_watches.subscribe();
    drops.borrow_and_update();
    let mut live: broadcast::Receiver<Arc<Change>> = live;
    tokio::spawn(async move {
        let mut last_rv = start_rv;
        let deadline = tokio::time::sleep(Duration::from_secs(timeout));
        tokio::pin!(deadline);
        // `kubectl get -w` asks for Tables: each event's object is then a
        // one-row Table, as a real server sends.
        let as_object = |o: &Value, rv: u64| match &table {
            Some(include) => discovery::table(resource, std::slice::from_ref(o), rv, include),
            None => o.clone(),
        };
        let send_change = |c: &Change| {
            (c.resource == resource && filter.matches(&c.object))
                .then(|| json!({"type": c.kind.as_str(), "object": as_object(&c.object, c.rv)}))
        };
        for o in initial {
            if !send(
                &tx,
                json!({"type": "ADDED", "object": as_object(&o, start_rv)}),
            )
            .await
            {
                return;
            }
        }
        if initial_events && bookmarks {
            let bm = json!({"type": "BOOKMARK", "object": {"kind": resource.kind(), "apiVersion": resource.api_version(),
                "metadata": {"resourceVersion": last_rv.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}}});
            if !send(&tx, bm).await {
                return;
            }
        }
        for c in past {
            last_rv = c.rv;
            if let Some(ev) = send_change(&c) {
                if !send(&tx, ev).await {
                    return;
                }
            }
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                _ = drops.changed() => {
                    let _ = tx.send(Err(std::io::Error::other("watch dropped by fault injection"))).await;
                    return;
                }
                _ = tick.tick(), if bookmarks => {
                    let bm = json!({"type": "BOOKMARK", "object": {"kind": resource.kind(),
                        "apiVersion": resource.api_version(), "metadata": {"resourceVersion": last_rv.to_string()}}});
                    if !send(&tx, bm).await { return; }
                }
                c = live.recv() => match c {
                    Ok(c) => {
                        if c.rv <= last_rv { continue; }
                        last_rv = c.rv;
                        if let Some(ev) = send_change(&c) {
                            if !send(&tx, ev).await { return; }
                        }
                    }
                    // Too slow a reader: end the watch; the client resumes.
                    Err(_) => return,
                },
            }
        }
    });
    Ok(Reply::Stream("application/json", rx))
}

fn logs(state: &State, r: &Req, ns: &str, name: &str) -> Result<Reply, ApiError> {
    let pod = state
        .lock()
        .get(&Key::new(Resource::Pod, ns, name))
        .cloned()
        .ok_or_else(|| ApiError::not_found(Resource::Pod, name))?;
    let names: Vec<String> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect();
    let container = match r.q("container").filter(|c| !c.is_empty()) {
        Some(c) if names.iter().any(|n| n == c) => c.to_owned(),
        Some(c) => {
            return Err(ApiError::bad_request(format!(
                "container {c} is not valid for pod {name}"
            )))
        }
        None if names.len() == 1 => names[0].clone(),
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                names.join(" ")
            )))
        }
    };
    if r.flag("previous") {
        // Only the current run of a container is kept.
        return Err(ApiError::bad_request(format!(
            "previous terminated container \"{container}\" in pod \"{name}\" not found"
        )));
    }
    let log = match state.logs.get(ns, name, &container) {
        Some(l) => l,
        None => {
            let idx = names.iter().position(|n| *n == container).unwrap_or(0);
            let waiting = pod["status"]["containerStatuses"][idx]["state"]["waiting"]["reason"]
                .as_str()
                .unwrap_or("ContainerCreating");
            let why = match waiting {
                "ErrImagePull" | "ImagePullBackOff" => {
                    "trying and failing to pull image".to_owned()
                }
                w => w.to_owned(),
            };
            return Err(ApiError::bad_request(format!(
                "container \"{container}\" in pod \"{name}\" is waiting to start: {why}"
            )));
        }
    };
    let follow = r.flag("follow");
    let timestamps = r.flag("timestamps");
    let tail = r.q("tailLines").and_then(|t| t.parse::<usize>().ok());
    let format = move |(t, line): &(chrono::DateTime<chrono::Utc>, Vec<u8>)| {
        let mut out = Vec::with_capacity(line.len() + 32);
        if timestamps {
            out.extend_from_slice(
                t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                    .as_bytes(),
            );
            out.push(b' ');
        }
        out.extend_from_slice(line);
        out.push(b'\n');
        out
    };
    let (tx, rx) = mpsc::channel::<Chunk>(256);
    let mut drops = state.drop_logs.subscribe();
    drops.borrow_and_update();
    let mut tick = log.tick.subscribe();
    let start = {
        let b = log.buf.lock().unwrap_or_else(|e| e.into_inner());
        tail.map_or(0, |t| b.lines.len().saturating_sub(t))
    };
    if !follow {
        let b = log.buf.lock().unwrap_or_else(|e| e.into_inner());
        let text: Vec<u8> = b.lines[start..].iter().flat_map(format).collect();
        return Ok(Reply::Text(
            200,
            String::from_utf8_lossy(&text).into_owned(),
        ));
    }
    tokio::spawn(async move {
        let mut next = start;
        loop {
            tick.borrow_and_update();
            let (chunk, done) = {
                let b = log.buf.lock().unwrap_or_else(|e| e.into_inner());
                let chunk: Vec<u8> = b.lines[next..].iter().flat_map(format).collect();
                next = b.lines.len();
                (chunk, b.done)
            };
            if !chunk.is_empty() && tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                return;
            }
            if done {
                return;
            }
            tokio::select! {
                _ = tick.changed() => {}
                _ = tx.closed() => return,
                _ = drops.changed() => {
                    let _ = tx.send(Err(std::io::Error::other("log stream dropped by fault injection"))).await;
                    return;
                }
            }
        }
    });
    Ok(Reply::Stream("text/plain", rx))
}
