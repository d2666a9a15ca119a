//! One tar header block and the extension records before it, read exactly as
//! Go's `archive/tar` reader (the docker CLI's) reads them: what
//! [`TarFilter`](super::TarFilter) judges must be what the client unpacks.

use std::collections::HashMap;

use super::{fail, TarFilterError};

/// The fields of a header block that matter here.
pub(super) struct Header {
    pub(super) flag: u8,
    pub(super) name: Vec<u8>,
    pub(super) link: Vec<u8>,
    pub(super) size: u64,
}

impl Header {
    pub(super) fn parse(block: &[u8]) -> Result<Header, TarFilterError> {
        let stored = parse_numeric(&block[148..156])?;
        let mut unsigned: i64 = 0;
        let mut signed: i64 = 0;
        for (i, &b) in block.iter().enumerate() {
            let b = if (148..156).contains(&i) { b' ' } else { b };
            unsigned += i64::from(b);
            signed += i64::from(b as i8);
        }
        if stored != unsigned && stored != signed {
            return fail("a header with a bad checksum");
        }
        let magic = &block[257..263];
        let version = &block[263..265];
        let prefix: &[u8] = if magic == b"ustar\0" {
            if &block[508..512] == b"tar\0" {
                c_string(&block[345..476]) // star
            } else {
                c_string(&block[345..500]) // ustar, pax
            }
        } else if magic == b"ustar " && version == b" \0" {
            // GNU: no prefix. Go reads an unparsable atime/ctime there as an
            // old Go writer's prefix; such archives are not judged, but refused.
            if block[345] != 0 || block[357] != 0 {
                return fail("a GNU header with access or change times");
            }
            b""
        } else {
            b"" // V7
        };
        let mut name = Vec::new();
        if !prefix.is_empty() {
            name.extend_from_slice(prefix);
            name.push(b'/');
        }
        name.extend_from_slice(c_string(&block[0..100]));
        let size = parse_numeric(&block[124..136])?;
        if size < 0 {
            return fail("a negative size");
        }
        Ok(Header {
            flag: block[156],
            name,
            link: c_string(&block[157..257]).to_vec(),
            size: size as u64,
        })
    }
}

/// Bytes up to the first NUL (Go's `parseString`).
pub(super) fn c_string(b: &[u8]) -> &[u8] {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    &b[..end]
}

/// Go's `parseNumeric`: base-256 when the top bit is set, else octal padded
/// with spaces or NULs.
fn parse_numeric(b: &[u8]) -> Result<i64, TarFilterError> {
    if b.first().is_some_and(|&c| c & 0x80 != 0) {
        let inv: u8 = if b[0] & 0x40 != 0 { 0xff } else { 0 };
        let mut x: u64 = 0;
        for (i, &c) in b.iter().enumerate() {
            let mut c = c ^ inv;
            if i == 0 {
                c &= 0x7f;
            }
            if x >> 56 > 0 {
                return fail("a numeric field overflows");
            }
            x = (x << 8) | u64::from(c);
        }
        if x >> 63 > 0 {
            return fail("a numeric field overflows");
        }
        return Ok(if inv == 0xff { !(x as i64) } else { x as i64 });
    }
    let trimmed: &[u8] = {
        let start = b
            .iter()
            .position(|&c| c != b' ' && c != 0)
            .unwrap_or(b.len());
        let end = b
            .iter()
            .rposition(|&c| c != b' ' && c != 0)
            .map_or(start, |i| i + 1);
        &b[start..end.max(start)]
    };
    let digits = c_string(trimmed);
    if digits.is_empty() {
        return Ok(0);
    }
    let text = std::str::from_utf8(digits).or_else(|_| fail("a numeric field"))?;
    u64::from_str_radix(text, 8)
        .ok()
        .and_then(|v| i64::try_from(v).ok())
        .map_or_else(|| fail(format!("a numeric field {text:?}")), Ok)
}

/// Go's `parsePAX`: `"%d %s=%s\n"` records.
pub(super) fn parse_pax(data: &[u8]) -> Result<HashMap<String, String>, TarFilterError> {
    let mut out = HashMap::new();
    let mut rest = data;
    while !rest.is_empty() {
        let bad = || fail::<HashMap<String, String>>("a malformed PAX record");
        let Some(sp) = rest.iter().position(|&c| c == b' ') else {
            return bad();
        };
        let Some(n) = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|&n| n >= 5 && n <= rest.len() && n > sp + 1)
        else {
            return bad();
        };
        if rest[n - 1] != b'\n' {
            return bad();
        }
        let record = &rest[sp + 1..n - 1];
        let Some(eq) = record.iter().position(|&c| c == b'=') else {
            return bad();
        };
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        if key.is_empty() || key.contains(&0) {
            return bad();
        }
        let key = String::from_utf8_lossy(key).into_owned();
        if matches!(key.as_str(), "path" | "linkpath") && value.contains(&0) {
            return bad();
        }
        // A header name that is not UTF-8 is withheld (see `ArchiveEntry::name`);
        // a PAX `path` or `linkpath` that is not cuts the download off, as Go's
        // reader would not give it back unchanged.
        let value = match String::from_utf8(value.to_vec()) {
            Ok(v) => v,
            Err(_) if matches!(key.as_str(), "path" | "linkpath") => {
                return fail("a PAX name that is not UTF-8")
            }
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        out.insert(key, value);
        rest = &rest[n..];
    }
    Ok(out)
}
