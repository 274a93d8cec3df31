//! Conformance suites for Sluis.

pub mod dsp_schema;
pub mod odrl;
