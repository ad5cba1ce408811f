//! Encodings shared by directory documents: `YYYY-MM-DD HH:MM:SS` times (UTC), base64
//! without padding, RSA public keys as `RSA PUBLIC KEY` objects, and the argument helpers the
//! document parsers use.

use ::rsa::pkcs1::{DecodeRsaPublicKey, EncodeRsaPublicKey};
use ::rsa::traits::PublicKeyParts;
use ::rsa::{BoxedUint, PublicKey};
use base64ct::{Base64, Base64Unpadded, Encoding};

use super::meta::Item;
use super::{DirError, DirResult};

/// Seconds in a day.
const DAY: u64 = 86_400;

/// Days from 1970-01-01 to the civil date `y-m-d` (proleptic Gregorian), or `None` before
/// 1970. Howard Hinnant's `days_from_civil`.
fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    let y = if m <= 2 { y.checked_sub(1)? } else { y };
    let era = y / 400;
    let yoe = y % 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

/// The civil date of day `z` since 1970-01-01: `(year, month, day)`.
fn civil_from_days(z: u64) -> (u64, u64, u64) {
    let z = z + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

fn is_leap(y: u64) -> bool {
    y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400))
}

/// Format seconds since the epoch as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn format_time(unix: u64) -> String {
    let (y, m, d) = civil_from_days(unix / DAY);
    let s = unix % DAY;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

/// Parse exactly `n` ASCII digits.
fn digits(s: &str, n: usize) -> Option<u64> {
    if s.len() != n || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parse a `YYYY-MM-DD` date and a `HH:MM:SS` time (UTC, strictly formatted, no leap
/// seconds, not before 1970) into seconds since the epoch.
pub fn parse_time(date: &str, time: &str) -> Option<u64> {
    let mut dp = date.split('-');
    let y = digits(dp.next()?, 4)?;
    let m = digits(dp.next()?, 2)?;
    let d = digits(dp.next()?, 2)?;
    let mut tp = time.split(':');
    let hh = digits(tp.next()?, 2)?;
    let mm = digits(tp.next()?, 2)?;
    let ss = digits(tp.next()?, 2)?;
    if dp.next().is_some() || tp.next().is_some() {
        return None;
    }
    let month_len = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => return None,
    };
    if d == 0 || d > month_len || hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    let days = days_from_civil(y, m, d)?;
    Some(days * DAY + hh * 3600 + mm * 60 + ss)
}

/// Base64 (standard alphabet) without `=` padding, as Tor writes keys and digests.
pub fn b64_unpadded(bytes: &[u8]) -> String {
    Base64Unpadded::encode_string(bytes)
}

/// Decode base64 with or without `=` padding into exactly `N` bytes.
pub fn b64_decode_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    let decoded = Base64Unpadded::decode(s.trim_end_matches('='), &mut out).ok()?;
    (decoded.len() == N).then_some(out)
}

/// Write `data` as an object: `-----BEGIN tag-----`, base64 with padding in 64-character
/// lines, `-----END tag-----`, each line ending with `\n`.
pub fn write_object(out: &mut String, tag: &str, data: &[u8]) {
    let b64 = Base64::encode_string(data);
    out.push_str("-----BEGIN ");
    out.push_str(tag);
    out.push_str("-----\n");
    let mut rest = b64.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at_checked(64).unwrap_or((rest, ""));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str("-----END ");
    out.push_str(tag);
    out.push_str("-----\n");
}

/// Object tag of RSA public keys.
pub const RSA_PUBLIC_KEY_TAG: &str = "RSA PUBLIC KEY";

/// The PKCS#1 DER encoding of an RSA public key.
pub fn rsa_public_der(key: &PublicKey) -> DirResult<Vec<u8>> {
    key.to_pkcs1_der()
        .map(|d| d.as_bytes().to_vec())
        .map_err(|_| DirError::Encode("RSA public key"))
}

/// Write `key` as an `RSA PUBLIC KEY` object.
pub fn write_rsa_public(out: &mut String, key: &PublicKey) -> DirResult<()> {
    write_object(out, RSA_PUBLIC_KEY_TAG, &rsa_public_der(key)?);
    Ok(())
}

/// The modulus size of `key` in bits.
pub fn rsa_bits(key: &PublicKey) -> u32 {
    key.n().bit_width()
}

/// The RSA public key in `item`'s `RSA PUBLIC KEY` object, with its DER encoding. The key
/// must have between `min_bits` and `max_bits` bits and the public exponent 65537 (C tor's
/// `crypto_pk_public_exponent_ok`).
pub fn rsa_key_object(
    item: &Item<'_>,
    keyword: &'static str,
    min_bits: u32,
    max_bits: u32,
) -> DirResult<(PublicKey, Vec<u8>)> {
    let der = object_data(item, keyword, &[RSA_PUBLIC_KEY_TAG])?;
    let bad = |what| DirError::BadKey {
        keyword,
        line: item.line(),
        what,
    };
    let key = PublicKey::from_pkcs1_der(der).map_err(|_| bad("not a PKCS#1 RSA public key"))?;
    let bits = rsa_bits(&key);
    if bits < min_bits || bits > max_bits {
        return Err(bad("RSA key has the wrong size"));
    }
    if key.e() != &BoxedUint::from(65_537u32) {
        return Err(bad("RSA public exponent is not 65537"));
    }
    // Re-encoding must give back the same bytes: the digests of keys are over their DER.
    if rsa_public_der(&key).ok().as_deref() != Some(der) {
        return Err(bad("RSA key is not canonically encoded"));
    }
    Ok((key, der.to_vec()))
}

/// The data of `item`'s object, which must be present with one of the `tags`.
pub fn object_data<'i>(
    item: &'i Item<'_>,
    keyword: &'static str,
    tags: &[&str],
) -> DirResult<&'i [u8]> {
    let bad = |what| DirError::BadObject {
        keyword,
        line: item.line(),
        what,
    };
    let obj = item.object().ok_or(bad("missing object"))?;
    if !tags.contains(&obj.tag()) {
        return Err(bad("wrong object type"));
    }
    Ok(obj.data())
}

/// Fail if `item` has an object.
pub fn no_object(item: &Item<'_>, keyword: &'static str) -> DirResult<()> {
    if item.object().is_some() {
        return Err(DirError::BadObject {
            keyword,
            line: item.line(),
            what: "unexpected object",
        });
    }
    Ok(())
}

/// A [`DirError::BadArgument`] for `item`.
pub fn bad_arg(item: &Item<'_>, keyword: &'static str, what: &'static str) -> DirError {
    DirError::BadArgument {
        keyword,
        line: item.line(),
        what,
    }
}

/// The `i`-th argument of `item`, or [`DirError::BadArgument`] naming `what`.
pub fn need_arg<'a>(
    item: &Item<'a>,
    keyword: &'static str,
    i: usize,
    what: &'static str,
) -> DirResult<&'a str> {
    item.arg(i).ok_or_else(|| bad_arg(item, keyword, what))
}

/// Parse the `i`-th argument of `item` as a number.
pub fn num_arg<T: core::str::FromStr>(
    item: &Item<'_>,
    keyword: &'static str,
    i: usize,
    what: &'static str,
) -> DirResult<T> {
    let s = need_arg(item, keyword, i, what)?;
    // `FromStr` for integers accepts a leading `+`; Tor's formats do not.
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_arg(item, keyword, what));
    }
    s.parse().map_err(|_| bad_arg(item, keyword, what))
}

/// Parse arguments `i` and `i + 1` of `item` as a `YYYY-MM-DD HH:MM:SS` time.
pub fn time_arg(item: &Item<'_>, keyword: &'static str, i: usize) -> DirResult<u64> {
    let date = need_arg(item, keyword, i, "missing date")?;
    let time = need_arg(item, keyword, i.saturating_add(1), "missing time")?;
    parse_time(date, time).ok_or_else(|| bad_arg(item, keyword, "malformed time"))
}

/// The first item with `keyword`, which must be present.
pub fn the<'i, 'a>(items: &'i [Item<'a>], keyword: &'static str) -> DirResult<&'i Item<'a>> {
    opt(items, keyword).ok_or(DirError::MissingItem(keyword))
}

/// The first item with `keyword`, if any.
pub fn opt<'i, 'a>(items: &'i [Item<'a>], keyword: &str) -> Option<&'i Item<'a>> {
    items.iter().find(|i| i.keyword() == keyword)
}

/// Check that each keyword of `at_most_once` appears at most once in `items` and each of
/// `required` at least once.
pub fn check_counts(
    items: &[Item<'_>],
    at_most_once: &[&'static str],
    required: &[&'static str],
) -> DirResult<()> {
    let mut seen = std::collections::HashSet::new();
    for item in items {
        if let Some(&kw) = at_most_once.iter().find(|&&k| k == item.keyword())
            && !seen.insert(kw)
        {
            return Err(DirError::DuplicateItem {
                keyword: kw,
                line: item.line(),
            });
        }
    }
    for &kw in required {
        if opt(items, kw).is_none() {
            return Err(DirError::MissingItem(kw));
        }
    }
    Ok(())
}

/// Split `items` into runs, each starting at an item for which `starts` is true. Items
/// before the first start are an error ([`DirError::MisplacedItem`] naming `first_kw`).
pub fn split_items<'i, 'a>(
    items: &'i [Item<'a>],
    first_kw: &'static str,
    mut starts: impl FnMut(&[Item<'a>], &Item<'a>) -> bool,
) -> DirResult<Vec<&'i [Item<'a>]>> {
    let mut out = Vec::new();
    let mut begin = 0usize;
    for (i, item) in items.iter().enumerate() {
        let current = items.get(begin..i).unwrap_or(&[]);
        if i == 0 {
            if !starts(current, item) {
                return Err(DirError::MisplacedItem {
                    keyword: first_kw,
                    line: item.line(),
                });
            }
        } else if starts(current, item) {
            out.push(current);
            begin = i;
        }
    }
    if let Some(last) = items.get(begin..).filter(|r| !r.is_empty()) {
        out.push(last);
    }
    Ok(out)
}

/// The text of a run of items, from its first keyword to the end of its last item.
pub fn items_text<'a>(text: &'a str, run: &[Item<'_>]) -> &'a str {
    match (run.first(), run.last()) {
        (Some(a), Some(b)) => text.get(a.start()..b.end()).unwrap_or(""),
        _ => "",
    }
}

/// Parse 40 hex digits into 20 bytes.
pub fn hex20(s: &str) -> Option<[u8; 20]> {
    let mut out = [0u8; 20];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn times() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(parse_time("1970-01-01", "00:00:00"), Some(0));
        // A time from the fixtures; 1795646557 checked with `date -u -d @1795646557`.
        assert_eq!(parse_time("2026-11-25", "22:42:37"), Some(1_795_646_557));
        assert_eq!(format_time(1_795_646_557), "2026-11-25 22:42:37");
        assert_eq!(parse_time("2038-01-01", "00:00:00"), Some(2_145_916_800));
        assert_eq!(parse_time("2000-02-29", "23:59:59"), Some(951_868_799));
        assert_eq!(parse_time("1900-02-29", "00:00:00"), None);
        assert_eq!(parse_time("2001-02-29", "00:00:00"), None);
        assert_eq!(parse_time("1969-12-31", "23:59:59"), None);
        for bad in [
            ("2020-1-01", "00:00:00"),
            ("2020-01-01", "24:00:00"),
            ("2020-01-01", "00:60:00"),
            ("2020-13-01", "00:00:00"),
            ("2020-01-00", "00:00:00"),
            ("2020-01-01-", "00:00:00"),
            ("2020-01-01", "00:00:00:00"),
            ("+020-01-01", "00:00:00"),
        ] {
            assert_eq!(parse_time(bad.0, bad.1), None, "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn time_round_trip(t in 0u64..253_402_300_800) {
            let s = format_time(t);
            let (d, h) = s.split_once(' ').unwrap();
            proptest::prop_assert_eq!(parse_time(d, h), Some(t));
        }
    }

    #[test]
    fn objects_wrap_at_64() {
        let mut s = String::new();
        write_object(&mut s, "X", &[0xffu8; 50]);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[1].len(), 64);
        assert!(lines[2].ends_with('='));
        let doc = format!("k\n{s}");
        let items =
            super::super::meta::tokenize(&doc, &super::super::Limits::SERVER_DESCRIPTOR).unwrap();
        assert_eq!(items[0].object().unwrap().data(), &[0xffu8; 50][..]);
    }

    #[test]
    fn base64_arrays() {
        assert_eq!(b64_decode_array::<2>("AAE="), Some([0, 1]));
        assert_eq!(b64_decode_array::<2>("AAE"), Some([0, 1]));
        assert_eq!(b64_decode_array::<3>("AAE"), None);
        assert_eq!(b64_unpadded(&[0, 1]), "AAE");
    }
}
