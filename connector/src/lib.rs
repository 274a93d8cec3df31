//! placeholder

pub mod dataplane;
pub mod sample;
