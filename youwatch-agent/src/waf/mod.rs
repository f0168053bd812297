//! ModSecurity / Coraza audit-log pipeline: tail, parse, classify, score attackers per client IP.
//!
//! `crate::tail` follows the file; [`entry`] parses a line from bytes (over [`json`], a
//! walker that builds nothing); [`classify`] names the CRS classes, the anomaly score and
//! whether the WAF blocked; [`client_ip`] decides who the client is and whether it may ever be
//! banned; [`score`] keeps a leaky bucket per IP (bounded by [`clock`]) and grows bans for repeat
//! offenders; [`pipeline`] chains those for one line; [`detect`] turns a decision into a
//! `Detection` and [`suspect`] a flagged request into a `Suspicion` for the correlation;
//! [`stage`] runs it all live; [`replay`] says what a file would ban, and [`explain`] per
//! client why it would or would not be (the `replay` command prints both, for tuning).

pub mod classify;
pub mod client_ip;
pub mod clock;
pub mod config;
pub mod detect;
pub mod entry;
pub mod explain;
pub mod json;
pub mod metrics;
pub mod pipeline;
pub mod replay;
pub mod score;
pub mod stage;
pub mod suspect;

pub use config::WafConfig;
pub use stage::WafStage;
