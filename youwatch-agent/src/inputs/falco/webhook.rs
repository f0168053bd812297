//! `POST /falco`: Falco's `http_output` (one alert per request, or a batch) → detections.
//!
//! The bearer token is checked before the body is read; the body is read up to the limit and
//! no further; every refusal is a 4xx (or 503 when the agent cannot take it now) whose body
//! says why, and is counted by reason.

use std::sync::Arc;

use axum::{
    Router,
    body::{Body, to_bytes},
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};

use super::{
    FalcoMetrics, payload,
    token::{TokenError, TokenFile},
};
use crate::{
    bus::{Bus, Receipt},
    detection::Priority,
};

pub struct Webhook {
    pub token: TokenFile,
    pub max_body_bytes: usize,
    pub max_batch: usize,
    pub body_timeout: std::time::Duration,
    pub in_flight: tokio::sync::Semaphore,
    pub min_priority: Priority,
    pub bus: Bus,
    pub metrics: FalcoMetrics,
}

pub fn router(webhook: Arc<Webhook>) -> Router {
    Router::new()
        .route("/falco", post(receive))
        .with_state(webhook)
}

/// A refusal: status, reason label for the metric, and text for the client.
struct Refusal {
    status: StatusCode,
    reason: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
        }
    }
}

async fn receive(State(hook): State<Arc<Webhook>>, request: Request) -> Response {
    match accept(&hook, request).await {
        Ok(n) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            format!("{{\"accepted\":{n}}}\n"),
        )
            .into_response(),
        Err(r) => {
            hook.metrics.rejected(r.reason);
            tracing::debug!(reason = r.reason, message = %r.message, "refused a Falco webhook request");
            let mut response = (r.status, format!("{}\n", r.message)).into_response();
            if r.status == StatusCode::UNAUTHORIZED {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            response
        }
    }
}

/// Accepts the request's alerts; the number accepted, or why not.
async fn accept(hook: &Webhook, request: Request) -> Result<usize, Refusal> {
    let _permit = hook.in_flight.try_acquire().map_err(|_| {
        Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many requests at once; retry later",
        )
    })?;
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    hook.token.verify(authorization).map_err(|e| match e {
        TokenError::Unavailable { .. } => {
            tracing::error!("{e}");
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "token_unavailable",
                "the agent cannot read its webhook token; see its log",
            )
        }
        TokenError::Missing | TokenError::Invalid => {
            Refusal::new(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string())
        }
    })?;
    let too_large = || {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the body is larger than falco.webhook.max_body_bytes ({})",
                hook.max_body_bytes
            ),
        )
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > hook.max_body_bytes as u64) {
        return Err(too_large());
    }
    let body: Body = request.into_body();
    let read = tokio::time::timeout(hook.body_timeout, to_bytes(body, hook.max_body_bytes));
    let bytes = read.await.map_err(|_| {
        Refusal::new(
            StatusCode::REQUEST_TIMEOUT,
            "slow_body",
            format!("the body did not arrive within {:?}", hook.body_timeout),
        )
    })?;
    let bytes = bytes.map_err(|e| {
        if is_length_limit(&e) {
            too_large()
        } else {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("reading the body: {e}"),
            )
        }
    })?;
    let detections = payload::parse(&bytes, hook.max_batch).map_err(|e| {
        let reason = match e {
            payload::PayloadError::Json(_) => "bad_json",
            payload::PayloadError::TooMany { .. } => "too_many",
            _ => "invalid_alert",
        };
        Refusal::new(StatusCode::BAD_REQUEST, reason, e.to_string())
    })?;
    // Taken means taken by every listener (the response stage journaled it): only then is
    // the request answered 200, so Falco's delivery is never acknowledged early. A full
    // queue makes the request wait (back-pressure), never drops.
    let receipt = Receipt::new();
    let mut accepted = 0;
    for d in detections {
        hook.metrics.received.inc();
        if d.priority > hook.min_priority {
            hook.metrics.ignored.inc();
            continue;
        }
        hook.bus
            .publish_waiting(d, Some(&receipt))
            .await
            .map_err(|e| shutting_down(e.to_string()))?;
        accepted += 1;
    }
    receipt
        .settled()
        .await
        .map_err(|e| shutting_down(e.to_string()))?;
    Ok(accepted)
}

fn shutting_down(why: String) -> Refusal {
    Refusal::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "shutting_down",
        format!("the agent is shutting down ({why}); retry later"),
    )
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}
