//! # sluis-connector
//!
//! The Sluis connector: the DSP protocol server and client, the contract negotiation and
//! transfer process state machines, the management API, the Arrow Flight data plane and
//! persistence. The `sluis` binary is a thin CLI over this library.
//!
//! Layers, outside in:
//! - [`server`] accepts connections (mutual TLS for DSP) and hands requests to
//!   [`protocol`] (DSP 2025-1 binding) and [`mgmt`] (management API);
//! - both call the [`engine`], which steps the pure state machines of [`dsp`] and commits
//!   each change with its outgoing messages in the [`store`];
//! - the [`outbox`] delivers those messages through the [`client`];
//! - the [`dataplane`] serves Arrow Flight, asking [`access`] who may read what.

pub mod access;
pub mod audit;
pub mod bench;
pub mod bench_flight;
pub mod catalog_log;
pub mod cli;
pub mod cli_catalog;
pub mod client;
pub mod config;
pub mod consumer_cli;
pub mod dataplane;
pub mod demo;
pub mod dsp;
pub mod engine;
pub mod federation;
pub mod flight_client;
pub mod holder;
pub mod mgmt;
pub mod mgmt_catalog;
pub mod mgmt_client;
pub mod node;
pub mod outbox;
pub mod protocol;
pub mod protocol_catalog;
pub mod run;
pub mod sample;
pub mod scenario;
pub mod server;
pub mod store;
pub mod tls;
pub mod visibility;
