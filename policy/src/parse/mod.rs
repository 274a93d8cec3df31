//! Parsers: JSON (DSP compact, JSON-LD prefixed and expanded) and Turtle.

pub mod json;
pub mod turtle;
