// SPDX-License-Identifier: Apache-2.0
//! Just enough of Kubernetes' protobuf encoding to read the one body the
//! real kubectl sends that way to us: `kubectl auth can-i`'s
//! SelfSubjectAccessReview (built-in typed clients prefer protobuf).

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

/// The length-delimited fields of a message: (field number, bytes).
fn fields(mut b: &[u8]) -> Vec<(u64, &[u8])> {
    let mut out = Vec::new();
    while let Some((key, n)) = varint(b) {
        b = &b[n..];
        match key & 7 {
            0 => match varint(b) {
                Some((_, n)) => b = &b[n..],
                None => break,
            },
            1 if b.len() >= 8 => b = &b[8..],
            5 if b.len() >= 4 => b = &b[4..],
            2 => match varint(b) {
                Some((len, n)) if b.len() >= n + len as usize => {
                    out.push((key >> 3, &b[n..n + len as usize]));
                    b = &b[n + len as usize..];
                }
                _ => break,
            },
            _ => break,
        }
    }
    out
}

fn field<'a>(f: &[(u64, &'a [u8])], n: u64) -> Option<&'a [u8]> {
    f.iter().find(|(k, _)| *k == n).map(|(_, v)| *v)
}

/// A protobuf-encoded SelfSubjectAccessReview (with its `k8s\0` envelope)
/// as JSON, or `None` if it is not one.
pub fn self_subject_access_review(body: &[u8]) -> Option<Value> {
    let unknown = fields(body.strip_prefix(b"k8s\0")?);
    let raw = field(&unknown, 2)?;
    let ssar = fields(raw);
    let spec = fields(field(&ssar, 2)?);
    let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
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
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn decodes_an_access_review() {
        // resourceAttributes{namespace:"ns", verb:"create", resource:"jobs"}
        let ra = [
            &[0x0a, 2][..],
            b"ns",
            &[0x12, 6],
            b"create",
            &[0x2a, 4],
            b"jobs",
        ]
        .concat();
        let spec = [&[0x0a, ra.len() as u8][..], &ra].concat();
        let ssar = [&[0x12, spec.len() as u8][..], &spec].concat();
        let unknown = [&[0x12, ssar.len() as u8][..], &ssar].concat();
        let body = [&b"k8s\0"[..], &unknown].concat();
        let v = super::self_subject_access_review(&body).unwrap();
        assert_eq!(v["spec"]["resourceAttributes"]["verb"], "create");
        assert_eq!(v["spec"]["resourceAttributes"]["resource"], "jobs");
        assert_eq!(v["spec"]["resourceAttributes"]["namespace"], "ns");
    }
}
