//! Helpers shared by the integration tests. Each test binary uses a different part.
#![allow(dead_code)]

pub mod agent;
pub mod apiserver;
pub mod bench_args;
pub mod bus;
pub mod cgroup_tree;
pub mod correlation;
pub mod exec_events;
pub mod exec_load;
pub mod inventory_stage;
pub mod manifests;
pub mod marker_elf;
pub mod netlab;
pub mod nginx_waf;
pub mod node_ban;
pub mod require;
pub mod response;
pub mod soak;
pub mod waf_corpus;
pub mod wire;
