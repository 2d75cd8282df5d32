// SPDX-License-Identifier: Apache-2.0
//! Names of `enum skb_drop_reason` values, read from the running kernel's
//! BTF ([`crate::btf`]): the numbers change between kernel versions, so no
//! table is built in. The names also give the numbers of the reasons the
//! kernel filter ignores ([`IGNORED`]).

use std::collections::HashMap;
use std::io;
use std::path::Path;

pub use crate::btf::VMLINUX_BTF;
use crate::btf::{read_enum, Members};

/// kfree_skb reasons that are not packet loss on the network path, by name
/// (without the `SKB_DROP_REASON_` prefix), with why. The kernel program
/// skips them (`ignored_drop_reasons`); a name this kernel lacks is left
/// out.
pub const IGNORED: &[(&str, &str)] = &[
    (
        "QUEUE_PURGE",
        "a queue freed in bulk: on every normal close, the socket's receive \
         queue (e.g. the peer's FIN) when the socket is destroyed; the packets \
         had been delivered",
    ),
    (
        "SKB_CONSUMED",
        "not a drop at all (\"packet has been consumed\"); current kernels \
         send it to skb:consume_skb, this guards kernels that do not",
    ),
];

/// `skb_drop_reason` names, without their `SKB_DROP_REASON_` prefix, by value.
#[derive(Debug, Default, Clone)]
pub struct DropReasons {
    names: HashMap<u32, String>,
}

impl DropReasons {
    /// Reads `enum skb_drop_reason` from a raw BTF file; `None` if absent.
    pub fn read(path: &Path) -> io::Result<Option<Self>> {
        Ok(read_enum(path, "skb_drop_reason")?.map(Self::from_members))
    }

    /// From the enum's members, as [`crate::btf`] reads them.
    pub fn from_members(members: Members) -> Self {
        let names = members
            .into_iter()
            .map(|(name, value)| {
                let short = name
                    .strip_prefix("SKB_DROP_REASON_")
                    .map(str::to_owned)
                    .unwrap_or(name);
                (value, short)
            })
            .collect();
        DropReasons { names }
    }

    /// True when the kernel has no `enum skb_drop_reason` (before 5.17).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The name of `reason`, e.g. `NETFILTER_DROP`; `REASON_<n>` when this
    /// kernel's BTF does not know it.
    pub fn name(&self, reason: u32) -> String {
        self.names
            .get(&reason)
            .cloned()
            .unwrap_or_else(|| format!("REASON_{reason}"))
    }

    /// The value of the reason called `name` (without the prefix).
    pub fn value(&self, name: &str) -> Option<u32> {
        self.names
            .iter()
            .find_map(|(v, n)| (n == name).then_some(*v))
    }

    /// The reason under which this kernel frees a closed socket's queues
    /// when it cannot say QUEUE_PURGE (`unnamed_purge_reason` in
    /// podtrace.bpf.c): NOT_SPECIFIED on kernels without that name, 0 on
    /// kernels without reasons; `u32::MAX` (none) where it is named.
    pub fn unnamed_purge(&self) -> u32 {
        if self.is_empty() {
            0
        } else if self.value("QUEUE_PURGE").is_some() {
            u32::MAX
        } else {
            self.value("NOT_SPECIFIED").unwrap_or(u32::MAX)
        }
    }

    /// The values of [`IGNORED`] that this kernel has.
    pub fn ignored(&self) -> Vec<u32> {
        IGNORED
            .iter()
            .filter_map(|(name, _)| self.value(name))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_kernel() {
        if !Path::new(VMLINUX_BTF).exists() {
            return;
        }
        let r = DropReasons::read(Path::new(VMLINUX_BTF))
            .unwrap()
            .expect("enum skb_drop_reason in this kernel");
        let n = r.value("NETFILTER_DROP").expect("NETFILTER_DROP");
        assert_eq!(r.name(n), "NETFILTER_DROP");
        assert_eq!(r.name(u32::MAX), format!("REASON_{}", u32::MAX));
        assert!(r.value("QUEUE_PURGE").is_some());
        assert!(r.value("NOT_SPECIFIED").is_some());
        assert!(!r.ignored().is_empty());
        assert!(!r.ignored().contains(&r.value("NOT_SPECIFIED").unwrap()));
        assert!(!r.ignored().contains(&n));
    }

    /// Where QUEUE_PURGE has no name, a closed socket's queues are freed
    /// under NOT_SPECIFIED, or under 0 before reasons existed.
    #[test]
    fn unnamed_purge_follows_the_names() {
        let names = |list: &[(&str, u32)]| {
            DropReasons::from_members(
                list.iter()
                    .map(|(n, v)| (format!("SKB_DROP_REASON_{n}"), *v))
                    .collect(),
            )
        };
        assert_eq!(DropReasons::default().unnamed_purge(), 0);
        let v6_1 = names(&[("NOT_SPECIFIED", 2), ("NO_SOCKET", 3)]);
        assert_eq!(v6_1.unnamed_purge(), 2);
        let v6_18 = names(&[("NOT_SPECIFIED", 2), ("QUEUE_PURGE", 60)]);
        assert_eq!(v6_18.unnamed_purge(), u32::MAX);
    }

    #[test]
    fn agrees_with_libbpf() {
        use libbpf_rs::btf::types::Enum;
        if !Path::new(VMLINUX_BTF).exists() {
            return;
        }
        let ours = DropReasons::read(Path::new(VMLINUX_BTF)).unwrap().unwrap();
        let btf = libbpf_rs::Btf::from_vmlinux().unwrap();
        let en = btf.type_by_name::<Enum<'_>>("skb_drop_reason").unwrap();
        let mut count = 0;
        for m in en.iter() {
            let name = m.name.unwrap().to_str().unwrap();
            let short = name.strip_prefix("SKB_DROP_REASON_").unwrap_or(name);
            assert_eq!(ours.name(m.value as u32), short);
            count += 1;
        }
        assert_eq!(ours.names.len(), count);
    }
}
