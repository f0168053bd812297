//! The agent's HTTP listener on `telemetry.listen`: `/metrics` (Prometheus text from the
//! shared registry), `/healthz` (the process answers), `/readyz` (every part of the agent is
//! doing its job, see [`super::health`]), and the routes other stages hand in (`POST /falco`).

use std::{future::Future, net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use super::health::Readiness;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("telemetry.listen {addr}: cannot listen: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the HTTP listener on {addr} failed: {source}")]
    Serve {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// `/metrics` and `/healthz`, merged with `extra`.
pub fn router(registry: Arc<Registry>, extra: Router) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(registry)
        .merge(extra)
}

/// `/readyz`: 200 and one `part: ok` line per part when all are ready, else 503 and the
/// reason of each part that is not.
pub fn readyz(readiness: Readiness) -> Router {
    Router::new().route(
        "/readyz",
        get(move || {
            let report = readiness.report();
            let status = if report.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            async move { (status, report.text) }
        }),
    )
}

/// Binds `addr` (so a taken port fails at start-up, by name).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, HttpError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })
}

/// Serves `app` until `shutdown` resolves; in-flight requests are allowed to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    tracing::info!(%addr, "HTTP listener started (/metrics, /healthz, /readyz)");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| HttpError::Serve { addr, source })
}

async fn metrics(State(registry): State<Arc<Registry>>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}\n"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use prometheus_client::metrics::counter::Counter;

    use super::*;

    #[tokio::test]
    async fn metrics_and_health_over_http() {
        let mut registry = Registry::default();
        let c: Counter = Counter::default();
        c.inc();
        registry.register("youwatch_test_things", "Things", c);
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let readiness = Readiness::default();
        let sensor = readiness.flag("sensor", "loading");
        let server = tokio::spawn(serve(
            listener,
            router(Arc::new(registry), readyz(readiness)),
            async {
                let _ = stopped.await;
            },
        ));
        let get = move |path: &'static str| {
            tokio::task::spawn_blocking(move || {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                write!(
                    s,
                    "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                )
                .unwrap();
                let mut out = String::new();
                s.read_to_string(&mut out).unwrap();
                out
            })
        };
        let m = get("/metrics").await.unwrap();
        assert!(m.starts_with("HTTP/1.1 200"), "{m}");
        assert!(m.contains("youwatch_test_things_total 1"), "{m}");
        let h = get("/healthz").await.unwrap();
        assert!(h.starts_with("HTTP/1.1 200") && h.ends_with("ok\n"), "{h}");
        let r = get("/readyz").await.unwrap();
        assert!(
            r.starts_with("HTTP/1.1 503") && r.ends_with("sensor: not ready: loading\n"),
            "{r}"
        );
        sensor.ready();
        let r = get("/readyz").await.unwrap();
        assert!(
            r.starts_with("HTTP/1.1 200") && r.ends_with("sensor: ok\n"),
            "{r}"
        );
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_taken_port_is_named() {
        let first = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let addr = first.local_addr().unwrap();
        let err = bind(addr).await.unwrap_err();
        assert!(err.to_string().contains(&addr.to_string()));
    }
}
