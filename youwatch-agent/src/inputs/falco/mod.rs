//! Falco fallback input: where a cluster already runs Falco, its alerts become the same
//! `Detection`s our own rules produce (origin `Falco`, the pod taken from `output_fields`), so
//! the response stage acts on them too.
//!
//! Inputs: `POST /falco` on the agent's HTTP port, with Falco's `http_output` (`webhook`), and
//! Falco's `file_output` JSON lines, followed like `tail -F` (`file`).

mod file;
pub mod payload;
mod token;
mod webhook;

use std::{path::PathBuf, sync::Arc};

use axum::Router;
use prometheus_client::{metrics::counter::Counter, registry::Registry};
use serde::Deserialize;

pub use file::{CURSOR_FILE, FalcoFile, FileConfig};
pub use token::{TokenError, TokenFile};

use crate::{bus::Bus, detection::Priority, telemetry::by_reason::ByReason};

/// `falco:` section.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FalcoConfig {
    pub webhook: WebhookConfig,
    pub file: FileConfig,
    /// Falco alerts less severe than this are accepted but not acted on (counted as ignored).
    pub min_priority: Priority,
}

/// `falco.webhook:` — `POST /falco` on `telemetry.listen`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    pub enabled: bool,
    /// File holding the token senders must present, as `Authorization: Bearer <token>` or as
    /// the password of Basic credentials (Falco's http_output puts it in its URL), typically
    /// a mounted Secret. Required when enabled; re-read when it changes.
    pub token_file: PathBuf,
    /// Larger request bodies are refused with 413.
    pub max_body_bytes: usize,
    /// Larger batches (JSON arrays) are refused with 400.
    pub max_batch: usize,
    /// A body not received within this many seconds is refused with 408 (slow clients
    /// cannot hold the listener).
    pub body_timeout_seconds: u64,
    /// Requests handled at once; more are refused with 503.
    pub max_concurrent_requests: usize,
}

impl Default for FalcoConfig {
    fn default() -> Self {
        Self {
            webhook: WebhookConfig::default(),
            file: FileConfig::default(),
            min_priority: Priority::Debug,
        }
    }
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            token_file: PathBuf::new(),
            max_body_bytes: 1 << 20,
            max_batch: 1000,
            body_timeout_seconds: 10,
            max_concurrent_requests: 16,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FalcoError {
    #[error(
        "falco.webhook.enabled needs falco.webhook.token_file: the path of a file holding the \
         token Falco must present (in its http_output.url, http://falco:<token>@<agent>:9376/falco, \
         or as 'Authorization: Bearer <token>')"
    )]
    NoToken,
    #[error("falco.webhook: {0}")]
    Token(#[from] TokenError),
    #[error("falco.webhook.{0} must be at least 1")]
    Zero(&'static str),
    #[error("falco.webhook.enabled needs the HTTP listener: set telemetry.listen")]
    NoListener,
    #[error("falco.file: {0}")]
    Tail(#[from] crate::tail::TailError),
    #[error("starting the Falco file input thread: {0}")]
    Thread(std::io::Error),
}

/// The Falco input's metrics.
#[derive(Clone, Debug, Default)]
pub struct FalcoMetrics {
    received: Counter,
    ignored: Counter,
    rejected: ByReason,
}

impl FalcoMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "youwatch_falco_alerts_received",
            "Falco alerts received and valid",
            self.received.clone(),
        );
        registry.register(
            "youwatch_falco_alerts_ignored",
            "Falco alerts below falco.min_priority",
            self.ignored.clone(),
        );
        self.rejected.register(
            registry,
            "youwatch_falco_requests_rejected",
            "Falco webhook requests refused, by reason (unauthorized, too_large, slow_body, bad_json, invalid_alert, too_many, busy, token_unavailable, bad_body, shutting_down)",
        );
    }

    fn rejected(&self, reason: &'static str) {
        self.rejected.inc(reason);
    }
}

impl FalcoConfig {
    /// The `file_output` input, when `falco.file.path` is set; its cursor lives in
    /// `state_dir`.
    pub fn file_input(
        &self,
        state_dir: &std::path::Path,
        metrics: FalcoMetrics,
    ) -> Option<FalcoFile> {
        FalcoFile::new(&self.file, self.min_priority, state_dir, metrics)
    }

    /// The `POST /falco` routes, when the webhook is enabled. Reads the token once, so a
    /// missing or empty token file stops the agent at start-up, by name.
    pub fn webhook_router(
        &self,
        listener_enabled: bool,
        bus: Bus,
        metrics: FalcoMetrics,
    ) -> Result<Option<Router>, FalcoError> {
        let w = &self.webhook;
        if !w.enabled {
            return Ok(None);
        }
        if !listener_enabled {
            return Err(FalcoError::NoListener);
        }
        if w.token_file.as_os_str().is_empty() {
            return Err(FalcoError::NoToken);
        }
        if w.max_body_bytes == 0 {
            return Err(FalcoError::Zero("max_body_bytes"));
        }
        for (value, name) in [
            (w.max_batch, "max_batch"),
            (w.max_concurrent_requests, "max_concurrent_requests"),
            (
                usize::try_from(w.body_timeout_seconds).unwrap_or(usize::MAX),
                "body_timeout_seconds",
            ),
        ] {
            if value == 0 {
                return Err(FalcoError::Zero(name));
            }
        }
        let token = TokenFile::new(&w.token_file);
        token.check()?;
        tracing::info!(token_file = %w.token_file.display(), "Falco webhook enabled: POST /falco");
        Ok(Some(webhook::router(Arc::new(webhook::Webhook {
            token,
            max_body_bytes: w.max_body_bytes,
            max_batch: w.max_batch,
            body_timeout: std::time::Duration::from_secs(w.body_timeout_seconds),
            in_flight: tokio::sync::Semaphore::new(w.max_concurrent_requests),
            min_priority: self.min_priority,
            bus,
            metrics,
        }))))
    }
}
