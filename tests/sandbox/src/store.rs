// SPDX-License-Identifier: Apache-2.0
//! The object store: every API object as JSON, one global resource version
//! (as etcd's revision), and a bounded history of changes that watches
//! replay from. A watch from before the history's start gets `410 Gone`,
//! which is what makes clients re-list, as against a real server.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::broadcast;

/// Changes kept for watches to resume from (a real server keeps ~5 min).
const HISTORY: usize = 20_000;

/// What the server serves; one entry per resource, with its discovery facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    Namespace,
    Node,
    Pod,
    Job,
    Event,
    Service,
    NetworkPolicy,
    Deployment,
    ReplicaSet,
    EndpointSlice,
}

impl Resource {
    pub const ALL: [Resource; 10] = [
        Resource::Namespace,
        Resource::Node,
        Resource::Pod,
        Resource::Job,
        Resource::Event,
        Resource::Service,
        Resource::NetworkPolicy,
        Resource::Deployment,
        Resource::ReplicaSet,
        Resource::EndpointSlice,
    ];

    pub fn plural(self) -> &'static str {
        match self {
            Resource::Namespace => "namespaces",
            Resource::Node => "nodes",
            Resource::Pod => "pods",
            Resource::Job => "jobs",
            Resource::Event => "events",
            Resource::Service => "services",
            Resource::NetworkPolicy => "networkpolicies",
            Resource::Deployment => "deployments",
            Resource::ReplicaSet => "replicasets",
            Resource::EndpointSlice => "endpointslices",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Resource::Namespace => "Namespace",
            Resource::Node => "Node",
            Resource::Pod => "Pod",
            Resource::Job => "Job",
            Resource::Event => "Event",
            Resource::Service => "Service",
            Resource::NetworkPolicy => "NetworkPolicy",
            Resource::Deployment => "Deployment",
            Resource::ReplicaSet => "ReplicaSet",
            Resource::EndpointSlice => "EndpointSlice",
        }
    }

    /// API group ("" for core).
    pub fn group(self) -> &'static str {
        match self {
            Resource::Job => "batch",
            Resource::NetworkPolicy => "networking.k8s.io",
            Resource::Deployment | Resource::ReplicaSet => "apps",
            Resource::EndpointSlice => "discovery.k8s.io",
            _ => "",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Resource::Job => "batch/v1",
            Resource::NetworkPolicy => "networking.k8s.io/v1",
            Resource::Deployment | Resource::ReplicaSet => "apps/v1",
            Resource::EndpointSlice => "discovery.k8s.io/v1",
            _ => "v1",
        }
    }

    pub fn namespaced(self) -> bool {
        !matches!(self, Resource::Namespace | Resource::Node)
    }

    /// `jobs.batch`, `pods`: how a real server names the resource in messages.
    pub fn qualified(self) -> String {
        match self.group() {
            "" => self.plural().to_owned(),
            g => format!("{}.{g}", self.plural()),
        }
    }

    pub fn from_path(group: &str, plural: &str) -> Option<Resource> {
        Resource::ALL
            .into_iter()
            .find(|r| r.group() == group && r.plural() == plural)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub resource: Resource,
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(resource: Resource, namespace: &str, name: &str) -> Key {
        Key {
            resource,
            namespace: if resource.namespaced() {
                namespace.to_owned()
            } else {
                String::new()
            },
            name: name.to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// Changes to come, for a watch.
pub type Changes = broadcast::Receiver<Arc<Change>>;

/// One change, as a watch sends it.
#[derive(Debug)]
pub struct Change {
    pub rv: u64,
    pub resource: Resource,
    pub kind: EventType,
    pub object: Value,
}

#[derive(Debug)]
pub struct Store {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Arc<Change>>,
    /// Watches from a version older than this get 410 Gone.
    compacted: u64,
    tx: broadcast::Sender<Arc<Change>>,
}

/// Why a store operation failed, for the API layer to turn into a Status.
#[derive(Debug)]
pub enum StoreError {
    AlreadyExists,
    NotFound,
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Store {
    pub fn new() -> Store {
        let (tx, _) = broadcast::channel(4096);
        Store {
            rv: 1,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            compacted: 0,
            tx,
        }
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn compacted(&self) -> u64 {
        self.compacted
    }

    /// Forgets the history: watches from any version before now get 410.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    pub fn get(&self, key: &Key) -> Option<&Value> {
        self.objects.get(key)
    }

    /// Objects of `resource` in `namespace` (all namespaces when `None`).
    pub fn list(&self, resource: Resource, namespace: Option<&str>) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|(k, _)| k.resource == resource && namespace.is_none_or(|ns| k.namespace == ns))
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn record(&mut self, resource: Resource, kind: EventType, object: Value) {
        let change = Arc::new(Change {
            rv: self.rv,
            resource,
            kind,
            object,
        });
        self.history.push_back(change.clone());
        while self.history.len() > HISTORY {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
        // No receivers is fine: nobody watches.
        let _ = self.tx.send(change);
    }

    /// Inserts a new object, filling in uid, resourceVersion and creationTimestamp.
    pub fn create(&mut self, resource: Resource, mut obj: Value) -> Result<Value, StoreError> {
        let ns = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
        let key = Key::new(resource, &ns, &name);
        if self.objects.contains_key(&key) {
            return Err(StoreError::AlreadyExists);
        }
        self.rv += 1;
        obj["apiVersion"] = json!(resource.api_version());
        obj["kind"] = json!(resource.kind());
        let meta = &mut obj["metadata"];
        if !resource.namespaced() {
            if let Some(m) = meta.as_object_mut() {
                m.remove("namespace");
            }
        }
        // The API layer strips a client's uid; one set here is the server's
        // own (a Job's selector is made from it before it is stored).
        if meta["uid"].as_str().is_none_or(str::is_empty) {
            meta["uid"] = json!(new_uid());
        }
        meta["resourceVersion"] = json!(self.rv.to_string());
        meta["creationTimestamp"] = json!(now());
        if matches!(
            resource,
            Resource::Job | Resource::Deployment | Resource::ReplicaSet
        ) {
            meta["generation"] = json!(1);
        }
        self.objects.insert(key, obj.clone());
        self.record(resource, EventType::Added, obj.clone());
        Ok(obj)
    }

    /// Changes an object in place; a change that leaves it equal is a no-op
    /// (no new version, no watch event), as with a real server's updates.
    pub fn update(&mut self, key: &Key, f: impl FnOnce(&mut Value)) -> Result<Value, StoreError> {
        let obj = self.objects.get_mut(key).ok_or(StoreError::NotFound)?;
        let before = obj.clone();
        f(obj);
        if *obj == before {
            return Ok(before);
        }
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let obj = obj.clone();
        self.record(key.resource, EventType::Modified, obj.clone());
        Ok(obj)
    }

    /// Removes an object; its DELETED event carries a new resource version.
    pub fn remove(&mut self, key: &Key) -> Result<Value, StoreError> {
        let mut obj = self.objects.remove(key).ok_or(StoreError::NotFound)?;
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(key.resource, EventType::Deleted, obj.clone());
        Ok(obj)
    }

    /// Changes after `rv` still in the history, and a receiver for the
    /// ones to come, taken atomically so nothing falls in between. `None`
    /// when `rv` is older than the history (410 Gone).
    pub fn watch_from(&self, rv: u64) -> Option<(Vec<Arc<Change>>, Changes)> {
        if rv < self.compacted {
            return None;
        }
        let past = self.history.iter().filter(|c| c.rv > rv).cloned().collect();
        Some((past, self.tx.subscribe()))
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.tx.subscribe()
    }
}

pub fn new_uid() -> String {
    let b: [u8; 16] = rand::random();
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-4{:01x}{:02x}-{:01x}{:01x}{:02x}-{}",
        b[0],
        b[1],
        b[2],
        b[3],
        b[4],
        b[5],
        b[6] & 0xf,
        b[7],
        8 | (b[8] & 0x3),
        b[8] >> 4,
        b[9],
        b[10..16]
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    )
}

/// Five characters from the alphabet Kubernetes uses for generated names.
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}
