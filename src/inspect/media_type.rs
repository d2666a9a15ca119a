//! Content-Type checks as the daemon and Go's `net/http` make them: the
//! daemon's `CheckForJSON`, whether `ParseForm` would read a form body, and
//! the part of `mime.ParseMediaType` both rely on.

use http::header::CONTENT_TYPE;
use http::HeaderMap;

use super::{gojson, BodyError, FORM, JSON};

pub(super) fn content_type_error(expected: &'static str, headers: &HeaderMap) -> BodyError {
    let got = headers
        .get(CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    BodyError::ContentType { expected, got }
}

/// The daemon's `CheckForJSON`: no Content-Type is fine only for an empty
/// body; otherwise the media type must be `application/json`.
pub(super) fn check_json_content_type(headers: &HeaderMap, empty: bool) -> Result<(), BodyError> {
    let Some(raw) = headers.get(CONTENT_TYPE) else {
        return if empty {
            Ok(())
        } else {
            Err(content_type_error(JSON, headers))
        };
    };
    if raw.as_bytes().is_empty() && empty {
        return Ok(());
    }
    match parse_media_type(raw.as_bytes()) {
        MediaType {
            essence: Some(essence),
            params_ok: true,
        } if essence == JSON => Ok(()),
        _ => Err(content_type_error(JSON, headers)),
    }
}

/// Would Go's `ParseForm` parse this request's body as a form? (POST, PUT or
/// PATCH with the form media type.) A form media type with odd parameters is
/// refused: Go still parses the body then, and we prefer not to guess.
pub(super) fn is_form_body(method: &str, headers: &HeaderMap) -> Result<bool, BodyError> {
    if !matches!(method, "POST" | "PUT" | "PATCH") {
        return Ok(false);
    }
    // Go's Header.Get: the first value.
    let Some(raw) = headers.get(CONTENT_TYPE) else {
        return Ok(false);
    };
    match parse_media_type(raw.as_bytes()) {
        MediaType {
            essence: Some(essence),
            params_ok,
        } if essence == FORM => {
            if params_ok {
                Ok(true)
            } else {
                Err(content_type_error(FORM, headers))
            }
        }
        _ => Ok(false),
    }
}

/// The result of Go's `mime.ParseMediaType` as far as we use it.
#[derive(Debug, PartialEq, Eq)]
struct MediaType {
    /// The lower-cased media type; `None` when Go returns "" (no valid type).
    essence: Option<String>,
    /// Parameters are well-formed, unique and without `*` continuations.
    params_ok: bool,
}

fn parse_media_type(raw: &[u8]) -> MediaType {
    // Go lower-cases per rune with simple mappings; invalid UTF-8 becomes
    // U+FFFD, which is no token character, so such a type is invalid.
    let text = String::from_utf8_lossy(raw);
    let (base, params) = match text.find(';') {
        Some(i) => (&text[..i], &text[i..]),
        None => (&text[..], ""),
    };
    let lowered: String = base.chars().map(gojson::simple_lower).collect();
    let essence = lowered.trim_matches(char::is_whitespace);
    if !valid_disposition(essence) {
        return MediaType {
            essence: None,
            params_ok: false,
        };
    }
    MediaType {
        essence: Some(essence.to_string()),
        params_ok: media_params_ok(params),
    }
}

fn is_token_char(c: char) -> bool {
    c > ' ' && c < '\u{7f}' && !"()<>@,;:\\\"/[]?=".contains(c)
}

/// Go's `consumeToken`: the longest prefix of token characters.
fn take_token(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !is_token_char(c)).unwrap_or(s.len());
    s.split_at(end)
}

/// Go's `checkMediaTypeDisposition`: `token` or `token/token`.
fn valid_disposition(s: &str) -> bool {
    let (kind, rest) = take_token(s);
    if kind.is_empty() {
        return false;
    }
    if rest.is_empty() {
        return true;
    }
    let Some(rest) = rest.strip_prefix('/') else {
        return false;
    };
    let (subtype, rest) = take_token(rest);
    !subtype.is_empty() && rest.is_empty()
}

/// Go's parameter loop, strict: any parse failure, duplicate name or RFC 2231
/// continuation makes the parameters not OK (a trailing `;` is fine).
fn media_params_ok(mut rest: &str) -> bool {
    let mut seen: Vec<String> = Vec::new();
    loop {
        rest = rest.trim_start_matches(char::is_whitespace);
        if rest.is_empty() {
            return true;
        }
        let Some(after) = rest.strip_prefix(';') else {
            return false;
        };
        let after = after.trim_start_matches(char::is_whitespace);
        if after.is_empty() {
            return true;
        }
        let (name, after) = take_token(after);
        if name.is_empty() || name.contains('*') {
            return false;
        }
        let name = name.to_ascii_lowercase();
        let after = after.trim_start_matches(char::is_whitespace);
        let Some(after) = after.strip_prefix('=') else {
            return false;
        };
        let after = after.trim_start_matches(char::is_whitespace);
        let Some(after) = skip_param_value(after) else {
            return false;
        };
        if seen.contains(&name) {
            return false;
        }
        seen.push(name);
        rest = after;
    }
}

/// A token or a quoted string (no CR/LF inside); returns what follows.
fn skip_param_value(s: &str) -> Option<&str> {
    if let Some(quoted) = s.strip_prefix('"') {
        let bytes = quoted.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'"' => return Some(&quoted[i + 1..]),
                b'\\'
                    if i + 1 < bytes.len()
                        && "()<>@,;:\\\"/[]?=".contains(bytes[i + 1] as char) =>
                {
                    i += 2
                }
                b'\r' | b'\n' => return None,
                _ => i += 1,
            }
        }
        None
    } else {
        let (token, rest) = take_token(s);
        (!token.is_empty()).then_some(rest)
    }
}
