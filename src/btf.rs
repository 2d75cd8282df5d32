// SPDX-License-Identifier: Apache-2.0
//! A reader of the running kernel's raw BTF (`/sys/kernel/btf/vmlinux`)
//! for the few enums the runner needs at start.
//!
//! It does not parse the whole file: one pass over the type section,
//! through a 64 KiB window, finds the big enums; only their names, and then
//! the members of the ones asked for, are read from the string section.
//! The file is mapped where the kernel allows it (6.16+), else read. That
//! is cheap enough (docs/runner.md) for the runner to read it at start, in
//! parallel with loading the programs; libbpf's own parse of the whole
//! file costs several times more.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::FileExt as _;
use std::path::Path;

/// Where the running kernel exposes its BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

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

/// An enum's members: (name, value).
pub type Members = Vec<(String, u32)>;

/// The members of the enum called `name` in the raw BTF file at `path`.
pub fn read_enum(path: &Path, name: &str) -> io::Result<Option<Members>> {
    Ok(read_enums(path, &[name])?.pop().flatten())
}

/// The members of each enum in `names` (`None` for one the file lacks),
/// in that order: one sequential pass over the type section through a
/// 64 KiB window, then single reads of the strings needed. Only enums of
/// at least 16 members are looked at.
pub fn read_enums(path: &Path, names: &[&str]) -> io::Result<Vec<Option<Members>>> {
    read_enums_from(&Source::open(path, true)?, names)
}

/// Whether the string section of the raw BTF file at `path` holds each of
/// `names`: a type is there when its name is (e.g. `btf_trace_X`, the
/// typedef of tracepoint X). One pass through a 64 KiB window.
pub fn has_strings(path: &Path, names: &[&str]) -> io::Result<Vec<bool>> {
    let src = Source::open(path, true)?;
    let mut hdr = [0u8; 24];
    src.read_exact_at(&mut hdr, 0)?;
    if u16::from_ne_bytes([hdr[0], hdr[1]]) != BTF_MAGIC {
        return Err(invalid("wrong magic (not raw BTF in this byte order)"));
    }
    let start = u64::from(u32_at(&hdr, 4)) + u64::from(u32_at(&hdr, 16));
    let len = u64::from(u32_at(&hdr, 20));
    // Each name with its NUL on both sides, so only whole strings match.
    let needles: Vec<Vec<u8>> = names
        .iter()
        .map(|n| [&[0u8][..], n.as_bytes(), &[0]].concat())
        .collect();
    let overlap = needles.iter().map(Vec::len).max().unwrap_or(0);
    let mut found = vec![false; names.len()];
    let mut window = vec![0u8; 64 * 1024 + overlap];
    let mut pos = 0u64;
    while pos < len {
        let want = window.len().min((len - pos) as usize);
        let n = src.read_at(&mut window[..want], start + pos)?;
        let chunk = &window[..n];
        for (f, needle) in found.iter_mut().zip(&needles) {
            *f |= chunk.windows(needle.len()).any(|w| w == needle.as_slice());
        }
        if n < want || pos + n as u64 >= len || found.iter().all(|f| *f) {
            break;
        }
        // Step back by the longest needle, so none is cut in two.
        pos += (n - overlap) as u64;
    }
    Ok(found)
}

fn read_enums_from(src: &Source, names: &[&str]) -> io::Result<Vec<Option<Members>>> {
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

    let mut found: Vec<Option<Members>> = vec![None; names.len()];
    for (name_off, at, vlen, is64) in candidates {
        if name_off == 0 {
            continue;
        }
        let name = string_at(src, strs, str_len, name_off)?;
        let Some(slot) = names.iter().position(|n| *n == name) else {
            continue;
        };
        if found[slot].is_some() {
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
        found[slot] = Some(members);
        if found.iter().all(Option::is_some) {
            break;
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let by_read = read_enums_from(&read, &["skb_drop_reason"]).unwrap()[0]
            .take()
            .unwrap();
        let by_map = read_enum(path, "skb_drop_reason").unwrap().unwrap();
        assert_eq!(by_read, by_map);
        assert!(by_read.len() > 50, "{by_read:?}");
    }

    /// Names of types this kernel has are found, and only whole ones.
    #[test]
    fn finds_type_names() {
        let names = [
            "btf_trace_kfree_skb",
            "btf_trace_inet_sk_error_report",
            "btf_trace_kfree_sk",
            "no_such_type_in_any_kernel",
        ];
        let found = has_strings(Path::new(VMLINUX_BTF), &names).unwrap();
        assert_eq!(found, [true, true, false, false]);
    }

    #[test]
    fn not_btf_is_an_error() {
        let dir = std::env::temp_dir().join(format!("pt-btf-{}", std::process::id()));
        std::fs::write(&dir, [0u8; 64]).unwrap();
        assert!(read_enum(&dir, "skb_drop_reason").is_err());
        let _ = std::fs::remove_file(&dir);
    }
}
