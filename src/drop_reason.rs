// SPDX-License-Identifier: Apache-2.0
//! Names of `enum skb_drop_reason` values, read from the running kernel's
//! BTF: the numbers change between kernel versions, so no table is built
//! in.
//!
//! The reader does not parse the whole of `/sys/kernel/btf/vmlinux`: one
//! pass over the type section, through a 64 KiB window, finds the big
//! enums; only their names, and then the members of the one called
//! `skb_drop_reason`, are read from the string section. The file is mapped
//! where the kernel allows it (6.16+), else read. That is cheap enough
//! (docs/runner.md) for the runner to read it at start, in parallel with
//! loading the programs: the names also give the numbers of the reasons
//! the kernel filter ignores ([`IGNORED`]).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::FileExt as _;
use std::path::Path;

/// Where the running kernel exposes its BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

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
    /// Reads the names from the running kernel's BTF; empty (every reason
    /// then shows as `REASON_<n>`) with a warning when that fails.
    pub fn from_kernel() -> Self {
        match Self::read(Path::new(VMLINUX_BTF)) {
            Ok(Some(r)) => r,
            Ok(None) => {
                tracing::warn!("the kernel's BTF has no enum skb_drop_reason");
                Self::default()
            }
            Err(e) => {
                tracing::warn!("cannot read the kernel's BTF for drop reason names: {e}");
                Self::default()
            }
        }
    }

    /// Reads `enum skb_drop_reason` from a raw BTF file; `None` if absent.
    pub fn read(path: &Path) -> io::Result<Option<Self>> {
        let Some(members) = read_enum(path, "skb_drop_reason")? else {
            return Ok(None);
        };
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
        Ok(Some(DropReasons { names }))
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

    /// The values of [`IGNORED`] that this kernel has.
    pub fn ignored(&self) -> Vec<u32> {
        IGNORED
            .iter()
            .filter_map(|(name, _)| self.value(name))
            .collect()
    }
}

const BTF_MAGIC: u16 = 0xeb9f;
const BTF_KIND_ENUM: u32 = 6;
const BTF_KIND_ENUM64: u32 = 19;
/// Longest string we read from the string section (enum and member names).
const NAME_MAX: usize = 128;

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("bad BTF: {msg}"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
}

/// Bytes that follow a type's 12-byte `struct btf_type`, by kind
/// (include/uapi/linux/btf.h).
fn extra_bytes(kind: u32, vlen: u32) -> Option<u64> {
    let vlen = u64::from(vlen);
    Some(match kind {
        1 => 4,                    // INT
        2 | 7..=12 | 16 | 18 => 0, // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
        3 => 12,                   // ARRAY
        4 | 5 => 12 * vlen,        // STRUCT, UNION: btf_member
        6 => 8 * vlen,             // ENUM: btf_enum
        13 => 8 * vlen,            // FUNC_PROTO: btf_param
        14 => 4,                   // VAR
        15 => 12 * vlen,           // DATASEC: btf_var_secinfo
        17 => 4,                   // DECL_TAG
        19 => 12 * vlen,           // ENUM64: btf_enum64
        _ => return None,
    })
}

/// The BTF file's bytes: mapped where the kernel allows it (Linux 6.16+
/// maps `/sys/kernel/btf/vmlinux` read-only, without copying), else read
/// through positioned reads (sysfs hands out at most a page per read).
enum Source {
    Map { addr: *mut libc::c_void, len: usize },
    File(File),
}

impl Source {
    fn open(path: &Path, map: bool) -> io::Result<Source> {
        let file = File::open(path)?;
        let len = file.metadata()?.len() as usize;
        if map && len > 0 {
            // SAFETY: a fresh read-only private mapping of a file we opened;
            // the kernel checks length and permissions.
            let addr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE,
                    file.as_raw_fd(),
                    0,
                )
            };
            if addr != libc::MAP_FAILED {
                return Ok(Source::Map { addr, len });
            }
        }
        Ok(Source::File(file))
    }

    /// Fills `buf` from `off` as far as the file goes; returns the length.
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        match self {
            Source::Map { addr, len } => {
                let start = (off as usize).min(*len);
                let n = buf.len().min(len - start);
                // SAFETY: [start, start + n) lies within the live mapping.
                let src = unsafe { std::slice::from_raw_parts((*addr as *const u8).add(start), n) };
                buf[..n].copy_from_slice(src);
                Ok(n)
            }
            Source::File(f) => {
                let mut done = 0;
                while done < buf.len() {
                    match f.read_at(&mut buf[done..], off + done as u64) {
                        Ok(0) => break,
                        Ok(n) => done += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(done)
            }
        }
    }

    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        if self.read_at(buf, off)? == buf.len() {
            Ok(())
        } else {
            Err(invalid("truncated"))
        }
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        if let Source::Map { addr, len } = *self {
            // SAFETY: unmapping the mapping made in open, used no more.
            unsafe { libc::munmap(addr, len) };
        }
    }
}

/// Reads the NUL-terminated string at `off` of the string section.
fn string_at(src: &Source, strs: u64, str_len: u32, off: u32) -> io::Result<String> {
    if off >= str_len {
        return Err(invalid("string offset out of range"));
    }
    let mut buf = [0u8; NAME_MAX];
    let want = NAME_MAX.min((str_len - off) as usize);
    let n = src.read_at(&mut buf[..want], strs + u64::from(off))?;
    let end = buf[..n]
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| invalid("unterminated or overlong string"))?;
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// The members (name, value) of the enum called `name` in the raw BTF
/// file at `path`: one sequential pass over the type section through a
/// 64 KiB window, then single reads of the strings needed.
pub fn read_enum(path: &Path, name: &str) -> io::Result<Option<Vec<(String, u32)>>> {
    read_enum_from(&Source::open(path, true)?, name)
}

fn read_enum_from(src: &Source, name: &str) -> io::Result<Option<Vec<(String, u32)>>> {
    let mut hdr = [0u8; 24];
    src.read_exact_at(&mut hdr, 0)?;
    if u16::from_ne_bytes([hdr[0], hdr[1]]) != BTF_MAGIC {
        return Err(invalid("wrong magic (not raw BTF in this byte order)"));
    }
    let hdr_len = u64::from(u32_at(&hdr, 4));
    let (type_off, type_len) = (u64::from(u32_at(&hdr, 8)), u64::from(u32_at(&hdr, 12)));
    let (str_off, str_len) = (u64::from(u32_at(&hdr, 16)), u32_at(&hdr, 20));
    let (types, strs) = (hdr_len + type_off, hdr_len + str_off);

    // Enums big enough to be the one: (name offset, members' file offset,
    // member count, 64-bit). Small enums are skipped without a name lookup.
    let mut candidates = Vec::new();
    let mut window = vec![0u8; 64 * 1024];
    // The window holds [win_start, win_start + win_len) of the type section.
    let (mut win_start, mut win_len) = (0u64, 0usize);
    let mut pos = 0u64;
    while pos < type_len {
        if pos + 12 > win_start + win_len as u64 {
            win_start = pos;
            let want = window.len().min((type_len - pos) as usize);
            win_len = src.read_at(&mut window[..want], types + pos)?;
            if win_len < 12 {
                return Err(invalid("truncated type section"));
            }
        }
        let t = &window[(pos - win_start) as usize..][..12];
        let info = u32_at(t, 4);
        let (kind, vlen) = ((info >> 24) & 0x1f, info & 0xffff);
        let extra = extra_bytes(kind, vlen).ok_or_else(|| invalid("unknown type kind"))?;
        if (kind == BTF_KIND_ENUM || kind == BTF_KIND_ENUM64) && vlen >= 16 {
            candidates.push((
                u32_at(t, 0),
                types + pos + 12,
                vlen,
                kind == BTF_KIND_ENUM64,
            ));
        }
        pos += 12 + extra;
    }
    drop(window);

    for (name_off, at, vlen, is64) in candidates {
        if name_off == 0 || string_at(src, strs, str_len, name_off)? != name {
            continue;
        }
        let size = if is64 { 12 } else { 8 };
        let mut raw = vec![0u8; vlen as usize * size];
        src.read_exact_at(&mut raw, at)?;
        let mut members = Vec::with_capacity(vlen as usize);
        for m in raw.chunks_exact(size) {
            // ENUM: name_off, val; ENUM64: name_off, val_lo32, val_hi32.
            let member = string_at(src, strs, str_len, u32_at(m, 0))?;
            members.push((member, u32_at(m, 4)));
        }
        return Ok(Some(members));
    }
    Ok(None)
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

    /// Kernels before 6.16 cannot map the file: the read path (a page per
    /// read from sysfs) must find the same.
    #[test]
    fn reading_finds_what_mapping_finds() {
        let path = Path::new(VMLINUX_BTF);
        if !path.exists() {
            return;
        }
        let read = Source::open(path, false).unwrap();
        assert!(matches!(read, Source::File(_)));
        let by_read = read_enum_from(&read, "skb_drop_reason").unwrap().unwrap();
        let by_map = read_enum(path, "skb_drop_reason").unwrap().unwrap();
        assert_eq!(by_read, by_map);
        assert!(by_read.len() > 50, "{by_read:?}");
    }

    #[test]
    fn not_btf_is_an_error() {
        let dir = std::env::temp_dir().join(format!("pt-btf-{}", std::process::id()));
        std::fs::write(&dir, [0u8; 64]).unwrap();
        assert!(read_enum(&dir, "skb_drop_reason").is_err());
        let _ = std::fs::remove_file(&dir);
    }
}
