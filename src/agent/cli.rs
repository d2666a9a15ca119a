//! `portcullis container …`. (Being written.)
