//! A decoding failure inside the decoder, with the path to the offending field
//! gathered while unwinding; turned into a [`BodyError`] at the top.

use super::MAX_DEPTH;
use crate::inspect::BodyError;

/// A decoding failure, with the path to it filled in while unwinding.
#[derive(Debug)]
pub(super) enum DecodeError {
    Syntax { offset: usize, msg: String },
    Type { path: Vec<String>, msg: String },
    TooDeep { offset: usize },
}

impl DecodeError {
    pub(super) fn at(mut self, segment: &str) -> Self {
        if let DecodeError::Type { path, .. } = &mut self {
            path.push(segment.to_string());
        }
        self
    }

    pub(super) fn into_body_error(self) -> BodyError {
        match self {
            DecodeError::Syntax { offset, msg } => {
                BodyError::Json(format!("{msg} at byte offset {offset}"))
            }
            DecodeError::Type { mut path, msg } => {
                path.reverse();
                if path.is_empty() {
                    BodyError::Json(msg)
                } else {
                    BodyError::Json(format!("{msg} (field {})", path.join(".")))
                }
            }
            DecodeError::TooDeep { offset } => BodyError::Json(format!(
                "JSON nested deeper than {MAX_DEPTH} levels at byte offset {offset}"
            )),
        }
    }
}

pub(super) type Res<T> = Result<T, DecodeError>;
