//! YouWatch node agent.
//!
//! One stage per module, talking through typed messages (see `ARCHITECTURE.md`):
//! `sensor` (kernel exec events, Falco alerts) → `inventory` (who did it) → `rules`
//! (Falco-format rules) → `Detection`; `waf` (ModSecurity audit log) → `Detection`;
//! `response` turns detections into Kubernetes actions, and with `correlate` ties a web
//! attack to the runtime detection that follows it; `netban` enforces the cluster's IP bans
//! in this node's kernel; `telemetry` reports.

// Module docs name the private submodules a reader goes to next: the developers' docs are
// built with private items (`cargo xtask test` checks them), where those links resolve.
#![allow(rustdoc::private_intra_doc_links)]

pub mod bus;
pub mod cgroupfs;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod correlate;
pub mod detection;
pub mod enforce;
pub mod event;
pub mod inputs;
pub mod inventory;
pub mod logging;
pub mod netban;
pub mod response;
pub mod rules;
pub mod run;
pub mod sensor;
pub mod stage;
pub mod tail;
pub mod telemetry;
pub mod waf;
pub mod yaml_word;
