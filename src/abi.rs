// SPDX-License-Identifier: Apache-2.0
//! Plain values as the kernel half lays them out (`bpf/podtrace.h`):
//! addresses keyed as IPv6, C strings, TCP states and flags.

use std::net::IpAddr;

use crate::bpf::types;

/// An address as the BPF side keys it: IPv6, or IPv4-mapped IPv6.
pub fn ip_key(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// The inverse of [`ip_key`].
pub fn ip_from_key(key: &[u8; 16]) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(*key);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// The text of a NUL-terminated C string (a fixed-size kernel or libc
/// field), lossily as UTF-8.
pub(crate) fn c_str(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    let n = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..n])
}

/// TCP flags as `SYN|ACK`.
pub fn tcp_flags(f: u8) -> String {
    let mut out = String::new();
    push_tcp_flags(f, &mut out);
    out
}

pub(crate) fn push_tcp_flags(f: u8, out: &mut String) {
    use types::pt_tcp_flag as F;
    // tcpdump's order.
    const NAMES: [(F, &str); 8] = [
        (F::PT_TCP_SYN, "SYN"),
        (F::PT_TCP_FIN, "FIN"),
        (F::PT_TCP_RST, "RST"),
        (F::PT_TCP_PSH, "PSH"),
        (F::PT_TCP_ACK, "ACK"),
        (F::PT_TCP_URG, "URG"),
        (F::PT_TCP_ECE, "ECE"),
        (F::PT_TCP_CWR, "CWR"),
    ];
    let start = out.len();
    for (bit, name) in NAMES {
        if u32::from(f) & bit.0 != 0 {
            if out.len() > start {
                out.push('|');
            }
            out.push_str(name);
        }
    }
}

/// A TCP state's name, as `ss` and the kernel's tracepoints print it.
pub fn tcp_state_name(state: u32) -> &'static str {
    use types::pt_tcp_state as S;
    match S(state) {
        S::PT_TCP_ESTABLISHED => "ESTABLISHED",
        S::PT_TCP_SYN_SENT => "SYN_SENT",
        S::PT_TCP_SYN_RECV => "SYN_RECV",
        S::PT_TCP_FIN_WAIT1 => "FIN_WAIT1",
        S::PT_TCP_FIN_WAIT2 => "FIN_WAIT2",
        S::PT_TCP_TIME_WAIT => "TIME_WAIT",
        S::PT_TCP_CLOSE => "CLOSE",
        S::PT_TCP_CLOSE_WAIT => "CLOSE_WAIT",
        S::PT_TCP_LAST_ACK => "LAST_ACK",
        S::PT_TCP_LISTEN => "LISTEN",
        S::PT_TCP_CLOSING => "CLOSING",
        S::PT_TCP_NEW_SYN_RECV => "NEW_SYN_RECV",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_read_like_tcpdump() {
        assert_eq!(tcp_flags(0x02), "SYN");
        assert_eq!(tcp_flags(0x12), "SYN|ACK");
        assert_eq!(tcp_flags(0x11), "FIN|ACK");
        assert_eq!(tcp_flags(0x04), "RST");
        assert_eq!(tcp_flags(0), "");
        assert_eq!(tcp_flags(0xff), "SYN|FIN|RST|PSH|ACK|URG|ECE|CWR");
    }

    #[test]
    fn states_read_like_ss() {
        assert_eq!(tcp_state_name(2), "SYN_SENT");
        assert_eq!(tcp_state_name(12), "NEW_SYN_RECV");
        assert_eq!(tcp_state_name(99), "UNKNOWN");
    }
}
