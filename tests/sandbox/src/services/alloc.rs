// SPDX-License-Identifier: Apache-2.0
//! ClusterIP allocation from the service CIDR, refusing as the real
//! allocator does (`failed to allocate IP …`).

use std::collections::HashSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde_json::{json, Value};

use crate::admission::Causes;
use crate::store::{Resource, Store};

const R: Resource = Resource::Service;

/// Allocates the ClusterIP (the one asked for, if any) from `cidr`,
/// refusing as the real allocator does.
pub(crate) fn allocate(store: &Store, cidr: Ipv4Net, obj: &mut Value) -> Result<(), Causes> {
    let asked = obj["spec"]["clusterIP"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    if asked.as_deref() == Some("None") {
        obj["spec"]["clusterIPs"] = json!(["None"]);
        return Ok(());
    }
    let taken: HashSet<Ipv4Addr> = store
        .list(R, None)
        .iter()
        .filter_map(|s| s["spec"]["clusterIP"].as_str()?.parse().ok())
        .collect();
    let range_msg = format!("The range of valid IPs is {cidr}");
    let ip = match asked {
        Some(a) => {
            let bad = |why: String| {
                vec![(
                    "spec.clusterIPs".to_owned(),
                    "FieldValueInvalid".to_owned(),
                    format!("Invalid value: []string{{\"{a}\"}}: failed to allocate IP {a}: {why}"),
                )]
            };
            let ip: Ipv4Addr = a.parse().map_err(|_| {
                vec![(
                    "spec.clusterIPs[0]".to_owned(),
                    "FieldValueInvalid".to_owned(),
                    format!("Invalid value: \"{a}\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"),
                )]
            })?;
            if !cidr.contains(&ip) || ip == cidr.network() || ip == cidr.broadcast() {
                return Err(bad(format!(
                    "provided IP is not in the valid range. {range_msg}"
                )));
            }
            if taken.contains(&ip) {
                return Err(bad("provided IP is already allocated".into()));
            }
            ip
        }
        None => {
            // Random, as the real allocator picks; the upper part of the
            // range first (the lower part is kept for fixed addresses such as
            // kube-dns's, as the real allocator does since 1.27).
            let hosts: Vec<Ipv4Addr> = cidr.hosts().filter(|h| !taken.contains(h)).collect();
            let upper: Vec<&Ipv4Addr> = hosts
                .iter()
                .filter(|h| u32::from(**h) - u32::from(cidr.network()) >= 16)
                .collect();
            let pool: Vec<&Ipv4Addr> = if upper.is_empty() {
                hosts.iter().collect()
            } else {
                upper
            };
            let Some(ip) = pool.get(rand::random_range(0..pool.len().max(1))) else {
                return Err(vec![(
                    "spec.clusterIPs".to_owned(),
                    "FieldValueInvalid".to_owned(),
                    "Invalid value: []string(nil): failed to allocate a serviceIP: range is full"
                        .to_owned(),
                )]);
            };
            **ip
        }
    };
    obj["spec"]["clusterIP"] = json!(ip.to_string());
    obj["spec"]["clusterIPs"] = json!([ip.to_string()]);
    Ok(())
}
