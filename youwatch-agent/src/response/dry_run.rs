//! Dry-run modes: `--dry-run` plans and prints, `--dry-run=server` lets the API server
//! validate every request (`dryRun=All`) without persisting it.

use std::{fmt, str::FromStr};

/// How far the response goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DryRun {
    /// Act.
    #[default]
    Off,
    /// Send nothing: print each planned request as one JSON line, with its reason.
    Client,
    /// Send every request with `dryRun=All`: the API server validates it and persists nothing.
    Server,
}

impl DryRun {
    /// Whether anything is changed in the cluster.
    pub fn acts(self) -> bool {
        self == DryRun::Off
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "unknown dry-run mode {0:?}: expected client (print only) or server (sent with dryRun=All)"
)]
pub struct UnknownDryRun(String);

impl FromStr for DryRun {
    type Err = UnknownDryRun;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" | "client" | "true" => Ok(DryRun::Client),
            "server" => Ok(DryRun::Server),
            "none" | "false" => Ok(DryRun::Off),
            _ => Err(UnknownDryRun(s.to_owned())),
        }
    }
}

impl fmt::Display for DryRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DryRun::Off => "none",
            DryRun::Client => "client",
            DryRun::Server => "server",
        })
    }
}

/// A request the response would send, as `--dry-run` prints it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PlannedRequest {
    pub method: &'static str,
    pub path: String,
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub body: serde_json::Value,
}

/// One `--dry-run` line: the request, what it is for, and why.
#[derive(serde::Serialize)]
struct PlanLine<'a> {
    dry_run: &'static str,
    playbook: &'a str,
    action: &'static str,
    request: &'a PlannedRequest,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'a str>,
    reason: &'a super::action::Evidence,
}

/// Prints a planned request as one JSON line on stdout (what `--dry-run` shows).
pub fn print_planned(
    decided: &super::action::Decided,
    request: &PlannedRequest,
    note: Option<&str>,
) {
    let line = PlanLine {
        dry_run: "client",
        playbook: &decided.playbook,
        action: decided.action.kind().as_str(),
        request,
        note,
        reason: &decided.evidence,
    };
    if let Err(e) = crate::run::print_json_line(&line) {
        tracing::warn!(error = %e, "cannot print a planned request");
    }
}
