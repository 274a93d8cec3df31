//! Conformance suites for Sluis.

pub mod odrl;
