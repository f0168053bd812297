//! Inputs that produce detections from outside the agent's own sensor: Falco's alerts
//! (webhook and `file_output`), and the runner every tailed file input shares (the WAF audit
//! log runs on it too).

pub mod falco;
pub mod tailed;
