//! # sluis-policy
//!
//! ODRL 2.2 for data spaces. (Being built: see the crate README once it lands.)

pub mod enforcement;
