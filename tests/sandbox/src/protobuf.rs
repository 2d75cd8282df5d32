// SPDX-License-Identifier: Apache-2.0
//! Just enough of Kubernetes' protobuf encoding to read the bodies the
//! real kubectl sends that way to us (its built-in typed clients prefer
//! protobuf): `kubectl auth can-i`'s SelfSubjectAccessReview and
//! `kubectl create namespace`'s Namespace, `kubectl create deployment`'s
//! Deployment (`apps::protobuf`). Field numbers are those of
//! k8s.io/api's `generated.proto`.

use serde_json::{json, Value};

/// Reads a varint; returns (value, bytes used).
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// One field's value on the wire.
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// The varint and length-delimited fields of a message, in order.
fn walk(mut b: &[u8]) -> Vec<(u64, Wire<'_>)> {
    let mut out = Vec::new();
    while let Some((key, n)) = varint(b) {
        b = &b[n..];
        match key & 7 {
            0 => match varint(b) {
                Some((v, n)) => {
                    out.push((key >> 3, Wire::Varint(v)));
                    b = &b[n..];
                }
                None => break,
            },
            1 if b.len() >= 8 => b = &b[8..],
            5 if b.len() >= 4 => b = &b[4..],
            2 => match varint(b) {
                Some((len, n)) if b.len() >= n + len as usize => {
                    out.push((key >> 3, Wire::Bytes(&b[n..n + len as usize])));
                    b = &b[n + len as usize..];
                }
                _ => break,
            },
            _ => break,
        }
    }
    out
}

/// The length-delimited fields of a message: (field number, bytes).
pub(crate) fn fields(b: &[u8]) -> Vec<(u64, &[u8])> {
    walk(b)
        .into_iter()
        .filter_map(|(n, w)| match w {
            Wire::Bytes(v) => Some((n, v)),
            Wire::Varint(_) => None,
        })
        .collect()
}

/// The varint field `n` of a message (ints and bools), if present.
pub(crate) fn number(b: &[u8], n: u64) -> Option<u64> {
    walk(b).into_iter().find_map(|(k, w)| match w {
        Wire::Varint(v) if k == n => Some(v),
        _ => None,
    })
}

pub(crate) fn field<'a>(f: &[(u64, &'a [u8])], n: u64) -> Option<&'a [u8]> {
    f.iter().find(|(k, _)| *k == n).map(|(_, v)| *v)
}

pub(crate) fn text(b: Option<&[u8]>) -> Option<String> {
    b.map(|b| String::from_utf8_lossy(b).into_owned())
}

/// A protobuf body (with its `k8s\0` envelope, a `runtime.Unknown`) as
/// JSON, or `None` if it is not a kind read here.
pub fn decode(body: &[u8]) -> Option<Value> {
    let unknown = fields(body.strip_prefix(b"k8s\0")?);
    let type_meta = fields(field(&unknown, 1)?);
    let raw = field(&unknown, 2)?;
    match text(field(&type_meta, 2))?.as_str() {
        "SelfSubjectAccessReview" => Some(self_subject_access_review(raw)),
        "Namespace" => Some(namespace(raw)),
        "Deployment" => Some(crate::apps::protobuf::deployment(raw)),
        _ => None,
    }
}

fn self_subject_access_review(raw: &[u8]) -> Value {
    let ssar = fields(raw);
    let spec = fields(field(&ssar, 2).unwrap_or_default());
    let mut out = json!({"spec": {}});
    if let Some(ra) = field(&spec, 1) {
        let ra = fields(ra);
        let names = [
            "namespace",
            "verb",
            "group",
            "version",
            "resource",
            "subresource",
            "name",
        ];
        let mut attrs = serde_json::Map::new();
        for (i, k) in names.iter().enumerate() {
            if let Some(v) = text(field(&ra, i as u64 + 1)) {
                attrs.insert((*k).to_owned(), json!(v));
            }
        }
        out["spec"]["resourceAttributes"] = Value::Object(attrs);
    }
    if let Some(nra) = field(&spec, 2) {
        let nra = fields(nra);
        out["spec"]["nonResourceAttributes"] =
            json!({"path": text(field(&nra, 1)), "verb": text(field(&nra, 2))});
    }
    out
}

/// `ObjectMeta`: what a client may set on create (the server fills in or
/// drops the rest).
pub(crate) fn object_meta(raw: &[u8]) -> Value {
    let meta = fields(raw);
    let mut out = json!({});
    for (n, k) in [(1, "name"), (2, "generateName"), (3, "namespace")] {
        if let Some(v) = text(field(&meta, n)) {
            out[k] = json!(v);
        }
    }
    // map<string, string>: repeated entries {key = 1, value = 2}.
    for (n, k) in [(11, "labels"), (12, "annotations")] {
        for (_, entry) in meta.iter().filter(|(f, _)| *f == n) {
            let e = fields(entry);
            let key = text(field(&e, 1)).unwrap_or_default();
            out[k][key] = json!(text(field(&e, 2)).unwrap_or_default());
        }
    }
    out
}

fn namespace(raw: &[u8]) -> Value {
    let ns = fields(raw);
    let mut out = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": object_meta(field(&ns, 1).unwrap_or_default())});
    if let Some(spec) = field(&ns, 2) {
        let finalizers: Vec<String> = fields(spec)
            .iter()
            .filter(|(f, _)| *f == 1)
            .filter_map(|(_, v)| text(Some(v)))
            .collect();
        if !finalizers.is_empty() {
            out["spec"]["finalizers"] = json!(finalizers);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    /// A length-delimited field.
    fn ld(n: u8, v: &[u8]) -> Vec<u8> {
        [&[n << 3 | 2, v.len() as u8][..], v].concat()
    }

    fn envelope(kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [ld(1, b"v1"), ld(2, kind.as_bytes())].concat();
        [b"k8s\0".to_vec(), ld(1, &type_meta), ld(2, raw)].concat()
    }

    #[test]
    fn decodes_an_access_review() {
        let ra = [ld(1, b"ns"), ld(2, b"create"), ld(5, b"jobs")].concat();
        let ssar = ld(2, &ld(1, &ra));
        let v = super::decode(&envelope("SelfSubjectAccessReview", &ssar)).unwrap();
        assert_eq!(v["spec"]["resourceAttributes"]["verb"], "create");
        assert_eq!(v["spec"]["resourceAttributes"]["resource"], "jobs");
        assert_eq!(v["spec"]["resourceAttributes"]["namespace"], "ns");
    }

    #[test]
    fn decodes_a_namespace_with_labels() {
        let label = [ld(1, b"team"), ld(2, b"net")].concat();
        let meta = [ld(1, b"demo"), ld(11, &label)].concat();
        let raw = [ld(1, &meta), ld(2, &ld(1, b"kubernetes"))].concat();
        let v = super::decode(&envelope("Namespace", &raw)).unwrap();
        assert_eq!(v["metadata"]["name"], "demo");
        assert_eq!(v["metadata"]["labels"]["team"], "net");
        assert_eq!(v["spec"]["finalizers"][0], "kubernetes");
    }

    #[test]
    fn other_kinds_are_not_read() {
        assert!(super::decode(&envelope("Pod", &[])).is_none());
        assert!(super::decode(b"{}").is_none());
    }
}
