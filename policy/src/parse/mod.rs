//! Parsers: JSON (DSP compact, JSON-LD prefixed and expanded).

pub mod json;
