//! Helpers shared by the integration tests. Each test binary uses a different part.
#![allow(dead_code)]

pub mod agent;
pub mod apiserver;
pub mod bus;
pub mod cgroup_tree;
pub mod exec_events;
pub mod exec_load;
pub mod inventory_stage;
pub mod manifests;
pub mod nginx_waf;
pub mod require;
pub mod response;
pub mod waf_corpus;
