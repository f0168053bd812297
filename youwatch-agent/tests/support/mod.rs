//! Helpers shared by the integration tests. Each test binary uses a different part.
#![allow(dead_code)]

pub mod apiserver;
pub mod cgroup_tree;
pub mod exec_events;
pub mod inventory_stage;
pub mod nginx_waf;
pub mod require;
