//! Go's `foldName`: how `encoding/json` compares a body's key with a struct
//! field name, with Unicode simple case mappings as Go's `unicode` package has them.

/// Go's `foldName` for one key: ASCII upper-cased; other runes mapped through
/// simple lower- then upper-casing.
pub fn fold_name(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for c in key.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_uppercase());
        } else {
            out.push(simple_upper(simple_lower(c)));
        }
    }
    out
}

/// Unicode simple lowercase mapping (Go's `unicode.ToLower`).
pub(crate) fn simple_lower(c: char) -> char {
    // U+0130's full lowercase is two chars; its simple mapping is 'i'.
    if c == '\u{130}' {
        return 'i';
    }
    single(c.to_lowercase()).unwrap_or(c)
}

/// Unicode simple uppercase mapping (Go's `unicode.ToUpper`).
pub(crate) fn simple_upper(c: char) -> char {
    if let Some(u) = single(c.to_uppercase()) {
        return u;
    }
    // Full uppercase is several chars; the simple mapping exists only for the
    // Greek letters with ypogegrammeni (to their titlecase form); others map to
    // themselves (ß, ŉ, ligatures, ...).
    match c as u32 {
        0x1F80..=0x1F87 | 0x1F90..=0x1F97 | 0x1FA0..=0x1FA7 => {
            char::from_u32(c as u32 + 8).unwrap_or(c)
        }
        0x1FB3 => '\u{1FBC}',
        0x1FC3 => '\u{1FCC}',
        0x1FF3 => '\u{1FFC}',
        _ => c,
    }
}

fn single(mut it: impl Iterator<Item = char>) -> Option<char> {
    let first = it.next()?;
    if it.next().is_some() {
        None
    } else {
        Some(first)
    }
}
