// SPDX-License-Identifier: Apache-2.0
//! `metav1.LabelSelector` matching and its `kubectl`-style text.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::Labels;

/// Whether `labels` satisfy `sel`: every `matchLabels` pair and every
/// `matchExpressions` requirement (AND). An empty selector matches all.
pub(crate) fn matches(sel: &LabelSelector, labels: &Labels) -> bool {
    let pairs = sel.match_labels.iter().flatten();
    let pairs_ok = pairs.into_iter().all(|(k, v)| labels.get(k) == Some(v));
    pairs_ok
        && sel.match_expressions.iter().flatten().all(|r| {
            let values = r.values.as_deref().unwrap_or_default();
            let value = labels.get(&r.key);
            match r.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                // A missing key satisfies NotIn, as in the API machinery.
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                // The API server rejects any other operator; match nothing
                // rather than widen a policy.
                _ => false,
            }
        })
}

/// The selector as `kubectl get -l` would take it; `{}` for "everything".
pub(crate) fn describe(sel: &LabelSelector) -> String {
    let mut parts: Vec<String> = sel
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for r in sel.match_expressions.iter().flatten() {
        let values = r.values.as_deref().unwrap_or_default().join(",");
        parts.push(match r.operator.as_str() {
            "In" => format!("{} in ({values})", r.key),
            "NotIn" => format!("{} notin ({values})", r.key),
            "Exists" => r.key.clone(),
            "DoesNotExist" => format!("!{}", r.key),
            op => format!("{} {op} ({values})", r.key),
        });
    }
    if parts.is_empty() {
        "{}".to_owned()
    } else {
        parts.join(",")
    }
}

/// Labels as `k=v,k=v` (`no labels` when empty), for near-miss details.
pub(crate) fn describe_labels(labels: &Labels) -> String {
    if labels.is_empty() {
        return "no labels".to_owned();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
