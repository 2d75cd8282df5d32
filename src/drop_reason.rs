// SPDX-License-Identifier: Apache-2.0
//! Names of `enum skb_drop_reason` values, read from the running kernel's
//! BTF: the numbers change between kernel versions, so no table is built
//! in. Loaded on the first drop, so runs without drops never parse BTF.

use std::collections::HashMap;

use libbpf_rs::btf::types::Enum;
use libbpf_rs::Btf;

/// Lazily loaded `skb_drop_reason` names, without their `SKB_DROP_REASON_`
/// prefix.
#[derive(Debug, Default)]
pub struct DropReasons {
    names: Option<HashMap<u32, String>>,
}

impl DropReasons {
    pub fn new() -> Self {
        Self::default()
    }

    /// The name of `reason`, e.g. `NETFILTER_DROP`; `REASON_<n>` when this
    /// kernel's BTF does not know it.
    pub fn name(&mut self, reason: u32) -> String {
        let names = self.names.get_or_insert_with(load);
        names
            .get(&reason)
            .cloned()
            .unwrap_or_else(|| format!("REASON_{reason}"))
    }
}

fn load() -> HashMap<u32, String> {
    let btf = match Btf::from_vmlinux() {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!("cannot read the kernel's BTF for drop reason names: {e}");
            return HashMap::new();
        }
    };
    let Some(en) = btf.type_by_name::<Enum<'_>>("skb_drop_reason") else {
        tracing::warn!("the kernel's BTF has no enum skb_drop_reason");
        return HashMap::new();
    };
    en.iter()
        .filter_map(|m| {
            let name = m.name?.to_str()?;
            let short = name.strip_prefix("SKB_DROP_REASON_").unwrap_or(name);
            Some((m.value as u32, short.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_kernel() {
        if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
            return;
        }
        let mut r = DropReasons::new();
        let all = r.names.get_or_insert_with(load).clone();
        let (&n, _) = all
            .iter()
            .find(|(_, v)| v.as_str() == "NETFILTER_DROP")
            .expect("NETFILTER_DROP in this kernel");
        assert_eq!(r.name(n), "NETFILTER_DROP");
        assert_eq!(r.name(u32::MAX), format!("REASON_{}", u32::MAX));
    }
}
