// SPDX-License-Identifier: Apache-2.0
//! Table columns for `kubectl get deploy,rs` (with `-o wide`), as the real
//! server prints them.

use serde_json::{json, Value};

use super::selector_string;
use crate::store::Resource;

type Columns = Vec<(&'static str, &'static str, u8)>;

/// Columns (name, type, priority) and cells for a Deployment or ReplicaSet.
pub fn cells(r: Resource, o: &Value, name: Value, age: Value) -> (Columns, Vec<Value>) {
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    let containers = o["spec"]["template"]["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let join = |k: &str| {
        json!(containers
            .iter()
            .filter_map(|c| c[k].as_str())
            .collect::<Vec<_>>()
            .join(","))
    };
    let wide = [
        join("name"),
        join("image"),
        json!(selector_string(&o["spec"]["selector"])),
    ];
    let spec = n(&o["spec"]["replicas"]);
    let st = &o["status"];
    let (cols, mut cells): (Columns, Vec<Value>) = match r {
        Resource::Deployment => (
            vec![
                ("Name", "string", 0),
                ("Ready", "string", 0),
                ("Up-to-date", "string", 0),
                ("Available", "string", 0),
                ("Age", "string", 0),
            ],
            vec![
                name,
                json!(format!("{}/{spec}", n(&st["readyReplicas"]))),
                json!(n(&st["updatedReplicas"])),
                json!(n(&st["availableReplicas"])),
                age,
            ],
        ),
        _ => (
            vec![
                ("Name", "string", 0),
                ("Desired", "integer", 0),
                ("Current", "integer", 0),
                ("Ready", "integer", 0),
                ("Age", "string", 0),
            ],
            vec![
                name,
                json!(spec),
                json!(n(&st["replicas"])),
                json!(n(&st["readyReplicas"])),
                age,
            ],
        ),
    };
    cells.extend(wide);
    let mut cols = cols;
    cols.extend([
        ("Containers", "string", 1),
        ("Images", "string", 1),
        ("Selector", "string", 1),
    ]);
    (cols, cells)
}
