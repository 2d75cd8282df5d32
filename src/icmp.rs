// SPDX-License-Identifier: Apache-2.0
//! ICMP and ICMPv6 errors about traced flows (`PT_ICMP` records of
//! packets.bpf.c): what they say, in words.

use std::net::IpAddr;

use crate::abi::ip_from_key;
use crate::bpf::types;

/// What an ICMP error record says, beyond the flow it quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IcmpError {
    pub error: String,
    pub mtu: Option<u32>,
    pub from: IpAddr,
    pub icmp_type: u8,
    pub icmp_code: u8,
}

/// The error a `PT_ICMP` record carries after its event (`tail`: the
/// record's `pt_icmp_info`); `None` when the record is too short.
pub(crate) fn decode(raw: &types::pt_event, tail: &[u8]) -> Option<IcmpError> {
    debug_assert_eq!(u32::from(raw.kind), types::pt_kind::PT_ICMP.0);
    let mut info = types::pt_icmp_info::default();
    plain::copy_from_bytes(&mut info, tail).ok()?;
    let from = ip_from_key(&info.from.addr);
    Some(IcmpError {
        error: words(from.is_ipv6(), info.r#type, info.code).into_owned(),
        mtu: (info.mtu != 0).then_some(info.mtu),
        from,
        icmp_type: info.r#type,
        icmp_code: info.code,
    })
}

/// ICMP (RFC 792, RFC 1812) or ICMPv6 (RFC 4443) type and code in words,
/// worded alike where the two mean the same.
pub(crate) fn words(v6: bool, icmp_type: u8, code: u8) -> std::borrow::Cow<'static, str> {
    let w = match (v6, icmp_type, code) {
        (false, 3, 0) | (true, 1, 0) => "net unreachable",
        (false, 3, 1) | (true, 1, 3) => "host unreachable",
        (false, 3, 2) => "protocol unreachable",
        (false, 3, 3) | (true, 1, 4) => "port unreachable",
        (false, 3, 4) => "frag needed",
        (false, 3, 5) => "source route failed",
        (false, 3, 6) => "net unknown",
        (false, 3, 7) => "host unknown",
        (false, 3, 9) => "net prohibited",
        (false, 3, 10) => "host prohibited",
        (false, 3, 13) | (true, 1, 1) => "admin prohibited",
        (true, 1, 5) => "source policy failed",
        (true, 1, 6) => "reject route",
        (false, 3, _) | (true, 1, _) => {
            return format!("unreachable code {code}").into();
        }
        (true, 2, _) => "packet too big",
        (false, 11, 0) | (true, 3, 0) => "time exceeded",
        (false, 11, _) | (true, 3, _) => "reassembly time exceeded",
        (false, 12, _) | (true, 4, _) => "parameter problem",
        _ => return format!("type {icmp_type} code {code}").into(),
    };
    w.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_alike_in_both_families() {
        let cases = [
            (false, 3, 3, "port unreachable"),
            (true, 1, 4, "port unreachable"),
            (false, 3, 1, "host unreachable"),
            (true, 1, 3, "host unreachable"),
            (false, 3, 4, "frag needed"),
            (true, 2, 0, "packet too big"),
            (false, 11, 0, "time exceeded"),
            (true, 3, 0, "time exceeded"),
            (false, 3, 13, "admin prohibited"),
            (true, 1, 1, "admin prohibited"),
            (false, 3, 14, "unreachable code 14"),
            (true, 4, 1, "parameter problem"),
            (true, 99, 2, "type 99 code 2"),
        ];
        for (v6, t, c, want) in cases {
            assert_eq!(words(v6, t, c), want, "v6={v6} type={t} code={c}");
        }
    }

    #[test]
    fn a_record_says_who_sent_what_and_the_mtu() {
        let raw = types::pt_event {
            kind: types::pt_kind::PT_ICMP.0 as u8,
            ..Default::default()
        };
        let mut info = types::pt_icmp_info {
            mtu: 1400,
            r#type: 3,
            code: 4,
            ..Default::default()
        };
        info.from.addr = crate::abi::ip_key("10.1.0.1".parse().unwrap());
        // SAFETY: pt_icmp_info is plain old data (integers only).
        let bytes = unsafe { plain::as_bytes(&info) };
        let got = decode(&raw, bytes).unwrap();
        assert_eq!(
            got,
            IcmpError {
                error: "frag needed".into(),
                mtu: Some(1400),
                from: "10.1.0.1".parse().unwrap(),
                icmp_type: 3,
                icmp_code: 4,
            }
        );
        assert_eq!(decode(&raw, &bytes[..8]), None, "a short record");
    }
}
