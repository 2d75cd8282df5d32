// SPDX-License-Identifier: Apache-2.0
//! Event times: RFC 3339 UTC with nanoseconds.

/// Formats a wall-clock time given as nanoseconds since the Unix epoch as
/// RFC 3339 UTC with nanoseconds, e.g. `2026-11-25T14:37:18.123456789Z`.
pub fn rfc3339_nanos(unix_ns: u128) -> String {
    Rfc3339::default().format(unix_ns)
}

/// [`rfc3339_nanos`] for a stream of timestamps: the date and time of day
/// are formatted once per second, only the nanoseconds per call (the
/// runner formats one per event).
#[derive(Debug, Default)]
pub struct Rfc3339 {
    /// The second `prefix` shows, and `YYYY-MM-DDTHH:MM:SS.` for it.
    second: Option<i64>,
    prefix: [u8; 20],
}

impl Rfc3339 {
    pub fn format(&mut self, unix_ns: u128) -> String {
        let mut out = String::with_capacity(30);
        self.format_into(unix_ns, &mut out);
        out
    }

    /// Overwrites `out` with the time (reusing its buffer).
    pub fn format_into(&mut self, unix_ns: u128, out: &mut String) {
        let secs = (unix_ns / 1_000_000_000) as i64;
        let nanos = (unix_ns % 1_000_000_000) as u32;
        out.clear();
        if self.second != Some(secs) {
            let days = secs.div_euclid(86_400);
            let rem = secs.rem_euclid(86_400) as u32;
            let (y, m, d) = civil_from_days(days);
            if !(0..=9999).contains(&y) {
                use std::fmt::Write as _;
                let _ = write!(
                    out,
                    "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
                    rem / 3600,
                    (rem % 3600) / 60,
                    rem % 60
                );
                return;
            }
            let mut p = *b"0000-00-00T00:00:00.";
            put_digits(&mut p[0..4], y as u32);
            put_digits(&mut p[5..7], m);
            put_digits(&mut p[8..10], d);
            put_digits(&mut p[11..13], rem / 3600);
            put_digits(&mut p[14..16], (rem % 3600) / 60);
            put_digits(&mut p[17..19], rem % 60);
            self.prefix = p;
            self.second = Some(secs);
        }
        // Digit by digit into a fixed buffer: `format!` with padding costs
        // several times as much.
        let mut b = [0u8; 30];
        b[..20].copy_from_slice(&self.prefix);
        put_digits(&mut b[20..29], nanos);
        b[29] = b'Z';
        out.push_str(std::str::from_utf8(&b).expect("ASCII digits"));
    }
}

/// `v` in decimal, zero-padded to fill `out`.
fn put_digits(out: &mut [u8], mut v: u32) {
    for c in out.iter_mut().rev() {
        *c = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// The current wall-clock time as [`rfc3339_nanos`].
pub fn now_rfc3339() -> String {
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    rfc3339_nanos(ns)
}

// Howard Hinnant's days-to-civil algorithm: avoids a date crate in the core.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_is_rfc3339_with_nanoseconds() {
        assert_eq!(
            rfc3339_nanos(1_764_081_438_123_456_789),
            "2025-11-25T14:37:18.123456789Z"
        );
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339_nanos(951_782_400_000_000_001),
            "2000-02-29T00:00:00.000000001Z"
        );
    }

    #[test]
    fn time_formatting_matches_the_general_form() {
        for ns in [
            0u128,
            1,
            999_999_999,
            86_399_999_999_999,
            1_764_081_438_123_456_789,
            4_102_444_800_000_000_000,   // 2100-01-01
            253_402_300_799_999_999_999, // 9999-12-31T23:59:59
        ] {
            let secs = (ns / 1_000_000_000) as i64;
            let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
            let rem = secs.rem_euclid(86_400);
            let general = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
                rem / 3600,
                (rem % 3600) / 60,
                rem % 60,
                ns % 1_000_000_000
            );
            assert_eq!(rfc3339_nanos(ns), general);
        }
    }

    #[test]
    fn a_reused_formatter_agrees_within_and_across_seconds() {
        let mut clock = Rfc3339::default();
        let base = 1_764_081_438_000_000_000u128;
        // Same second twice, the next second, back, a day later, the start.
        for ns in [
            base + 5,
            base + 999_999_999,
            base + 1_000_000_000,
            base + 7,
            base + 86_400_000_000_000,
            0,
        ] {
            // rfc3339_nanos formats with a fresh one.
            assert_eq!(clock.format(ns), rfc3339_nanos(ns), "at {ns}");
        }
    }
}
