//! The JSON lexer: whitespace, literals, numbers and strings in the grammar of
//! Go's scanner, with Go's string unescaping, and the container brackets with
//! the depth bound. What the values mean is in `semantics.rs`.

use std::borrow::Cow;

use super::error::{DecodeError, Res};
use super::MAX_DEPTH;

/// What kind of JSON value starts at the current position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Object,
    Array,
    String,
    Number,
    Bool,
    Null,
}

impl Kind {
    pub(super) fn go_name(self) -> &'static str {
        match self {
            Kind::Object => "object",
            Kind::Array => "array",
            Kind::String => "string",
            Kind::Number => "number",
            Kind::Bool => "bool",
            Kind::Null => "null",
        }
    }
}

pub(super) struct Parser<'a> {
    pub(super) s: &'a [u8],
    pub(super) text: &'a str,
    pub(super) pos: usize,
    pub(super) depth: usize,
}

impl<'a> Parser<'a> {
    pub(super) fn syntax<T>(&self, msg: impl Into<String>) -> Res<T> {
        Err(DecodeError::Syntax {
            offset: self.pos,
            msg: msg.into(),
        })
    }

    pub(super) fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.pos) {
            self.pos += 1;
        }
    }

    /// Skip whitespace and classify the next value.
    pub(super) fn kind(&mut self) -> Res<Kind> {
        self.skip_ws();
        match self.s.get(self.pos) {
            Some(b'{') => Ok(Kind::Object),
            Some(b'[') => Ok(Kind::Array),
            Some(b'"') => Ok(Kind::String),
            Some(b'-' | b'0'..=b'9') => Ok(Kind::Number),
            Some(b't' | b'f') => Ok(Kind::Bool),
            Some(b'n') => Ok(Kind::Null),
            Some(c) => self.syntax(format!(
                "invalid character {:?} looking for beginning of value",
                *c as char
            )),
            None => self.syntax("unexpected end of JSON input"),
        }
    }

    pub(super) fn literal(&mut self, word: &'static str) -> Res<()> {
        if self.s[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(())
        } else {
            self.syntax(format!("invalid literal, expected {word}"))
        }
    }

    pub(super) fn bool(&mut self) -> Res<bool> {
        if self.s[self.pos] == b't' {
            self.literal("true").map(|_| true)
        } else {
            self.literal("false").map(|_| false)
        }
    }

    /// A number literal in JSON's (and Go's scanner's) grammar:
    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    pub(super) fn number(&mut self) -> Res<&'a str> {
        let start = self.pos;
        let s = self.s;
        let mut i = self.pos;
        if s.get(i) == Some(&b'-') {
            i += 1;
        }
        match s.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while let Some(b'0'..=b'9') = s.get(i) {
                    i += 1;
                }
            }
            _ => {
                self.pos = i;
                return self.syntax("invalid number");
            }
        }
        if s.get(i) == Some(&b'.') {
            i += 1;
            if !matches!(s.get(i), Some(b'0'..=b'9')) {
                self.pos = i;
                return self.syntax("invalid number: digit expected after decimal point");
            }
            while let Some(b'0'..=b'9') = s.get(i) {
                i += 1;
            }
        }
        if let Some(b'e' | b'E') = s.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = s.get(i) {
                i += 1;
            }
            if !matches!(s.get(i), Some(b'0'..=b'9')) {
                self.pos = i;
                return self.syntax("invalid number: digit expected in exponent");
            }
            while let Some(b'0'..=b'9') = s.get(i) {
                i += 1;
            }
        }
        self.pos = i;
        Ok(&self.text[start..i])
    }

    /// A string, unescaped with Go's rules (a lone or invalid surrogate escape
    /// becomes U+FFFD, as Go's `unquote` does). Borrowed when there is no escape.
    pub(super) fn string(&mut self) -> Res<Cow<'a, str>> {
        debug_assert_eq!(self.s[self.pos], b'"');
        self.pos += 1;
        let start = self.pos;
        // Fast path: scan to the closing quote; fall back on the first escape.
        loop {
            match self.s.get(self.pos) {
                Some(b'"') => {
                    let out = &self.text[start..self.pos];
                    self.pos += 1;
                    return Ok(Cow::Borrowed(out));
                }
                Some(b'\\') => break,
                Some(c) if *c < 0x20 => return self.syntax("invalid control character in string"),
                Some(_) => self.pos += 1,
                None => return self.syntax("unexpected end of JSON input in string"),
            }
        }
        let mut out = String::with_capacity(self.pos - start + 16);
        out.push_str(&self.text[start..self.pos]);
        loop {
            let run_start = self.pos;
            while let Some(c) = self.s.get(self.pos) {
                if *c == b'"' || *c == b'\\' || *c < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(&self.text[run_start..self.pos]);
            match self.s.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let Some(&esc) = self.s.get(self.pos) else {
                        return self.syntax("unexpected end of JSON input in string escape");
                    };
                    self.pos += 1;
                    match esc {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let first = self.hex4()?;
                            let c = if (0xD800..0xE000).contains(&first) {
                                // Go: take a following \uXXXX only if it completes
                                // a valid pair; otherwise U+FFFD and leave it.
                                let pair = if first < 0xDC00
                                    && self.s.get(self.pos) == Some(&b'\\')
                                    && self.s.get(self.pos + 1) == Some(&b'u')
                                {
                                    let save = self.pos;
                                    self.pos += 2;
                                    match self.hex4() {
                                        Ok(second) if (0xDC00..0xE000).contains(&second) => {
                                            char::from_u32(
                                                0x10000
                                                    + ((first - 0xD800) << 10)
                                                    + (second - 0xDC00),
                                            )
                                        }
                                        _ => {
                                            self.pos = save;
                                            None
                                        }
                                    }
                                } else {
                                    None
                                };
                                pair.unwrap_or('\u{FFFD}')
                            } else {
                                char::from_u32(first).unwrap_or('\u{FFFD}')
                            };
                            out.push(c);
                        }
                        _ => {
                            self.pos -= 1;
                            return self.syntax("invalid escape in string");
                        }
                    }
                }
                Some(_) => return self.syntax("invalid control character in string"),
                None => return self.syntax("unexpected end of JSON input in string"),
            }
        }
    }

    fn hex4(&mut self) -> Res<u32> {
        let Some(digits) = self.s.get(self.pos..self.pos + 4) else {
            return self.syntax("invalid \\u escape");
        };
        let mut v = 0u32;
        for d in digits {
            let x = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return self.syntax("invalid \\u escape"),
            };
            v = v * 16 + u32::from(x);
        }
        self.pos += 4;
        Ok(v)
    }

    fn enter(&mut self) -> Res<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep { offset: self.pos });
        }
        Ok(())
    }

    /// After `{` or `[`: true if the container is empty (consumes the closer).
    pub(super) fn open(&mut self, close: u8) -> Res<bool> {
        self.enter()?;
        self.pos += 1;
        self.skip_ws();
        if self.s.get(self.pos) == Some(&close) {
            self.pos += 1;
            self.depth -= 1;
            return Ok(true);
        }
        Ok(false)
    }

    /// After a member or element: true if the container continues.
    pub(super) fn next(&mut self, close: u8) -> Res<bool> {
        self.skip_ws();
        match self.s.get(self.pos) {
            Some(b',') => {
                self.pos += 1;
                Ok(true)
            }
            Some(c) if *c == close => {
                self.pos += 1;
                self.depth -= 1;
                Ok(false)
            }
            Some(_) => self.syntax(format!("expected ',' or '{}'", close as char)),
            None => self.syntax("unexpected end of JSON input"),
        }
    }

    /// An object key and its colon.
    pub(super) fn key(&mut self) -> Res<Cow<'a, str>> {
        self.skip_ws();
        if self.s.get(self.pos) != Some(&b'"') {
            return self.syntax("expected string for object key");
        }
        let key = self.string()?;
        self.skip_ws();
        if self.s.get(self.pos) != Some(&b':') {
            return self.syntax("expected ':' after object key");
        }
        self.pos += 1;
        Ok(key)
    }
}
