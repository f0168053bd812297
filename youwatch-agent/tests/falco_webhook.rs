//! The Falco webhook over real HTTP on loopback: authentication, body limit, bad JSON,
//! invalid alerts, batches, token rotation, and the rejection metrics.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    sync::Arc,
    time::Duration,
};

mod support;

use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use youwatch_agent::{
    bus::{BusBuilder, BusMetrics, Delivery},
    detection::{Detection, Origin, Subject},
    inputs::falco::{FalcoConfig, FalcoMetrics, WebhookConfig},
    telemetry::http,
};

const ALERT: &str = r#"{"hostname":"node-1","output":"16:31:56.746609046: Notice A shell was spawned in a container with an attached terminal | user=root","output_fields":{"container.id":"3ad7b26ded6d","k8s.ns.name":"shop","k8s.pod.name":"juice-shop-6f7d9","proc.tty":34816},"priority":"Notice","rule":"Terminal shell in container","source":"syscall","tags":["container","shell"],"time":"2024-05-01T16:31:56.746609046Z"}"#;

struct Agent {
    addr: SocketAddr,
    detections: mpsc::Receiver<Detection>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<Result<(), http::HttpError>>,
}

impl Agent {
    /// The webhook on a bus whose listener takes (acknowledges) each detection at once.
    async fn start(token_file: &Path, max_body_bytes: usize, queue: usize) -> Agent {
        let config = FalcoConfig {
            webhook: WebhookConfig {
                enabled: true,
                token_file: token_file.to_owned(),
                max_body_bytes,
                max_batch: 3,
                body_timeout_seconds: 1,
                ..WebhookConfig::default()
            },
            ..FalcoConfig::default()
        };
        let mut registry = Registry::default();
        let falco_metrics = FalcoMetrics::default();
        falco_metrics.register(&mut registry);
        let (bus, mut listener) = support::bus::single(queue);
        let (tx, detections) = mpsc::channel(1024);
        tokio::spawn(async move {
            while let Some(d) = listener.recv().await {
                let _ = tx.send(d).await;
            }
        });
        let falco = config
            .webhook_router(true, bus, falco_metrics)
            .unwrap()
            .unwrap();
        let listener = http::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = http::router(Arc::new(registry), falco);
        let server = tokio::spawn(http::serve(listener, app, async {
            let _ = stopped.await;
        }));
        Agent {
            addr,
            detections,
            stop: Some(stop),
            server,
        }
    }

    /// One HTTP/1.1 request; (status, body).
    async fn request(&self, raw: Vec<u8>) -> (u16, String) {
        let addr = self.addr;
        tokio::task::spawn_blocking(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            // The server may answer (413) and close before reading everything we send.
            let _ = s.write_all(&raw);
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            let text = String::from_utf8_lossy(&out).into_owned();
            let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
            let body = text
                .split_once("\r\n\r\n")
                .map(|(_, b)| b.to_owned())
                .unwrap_or_default();
            (status, body)
        })
        .await
        .unwrap()
    }

    async fn post(&self, token: Option<&str>, body: &str) -> (u16, String) {
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let raw = format!(
            "POST /falco HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        self.request(raw.into_bytes()).await
    }

    async fn metrics(&self) -> String {
        self.request(b"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".to_vec())
            .await
            .1
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.server.await.unwrap().unwrap();
    }
}

fn token_dir(token: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, format!("{token}\n")).unwrap();
    (dir, path)
}

#[tokio::test]
async fn accepts_falco_alerts_one_or_batched() {
    let (_dir, token) = token_dir("s3cret");
    let mut agent = Agent::start(&token, 64 * 1024, 16).await;

    let (status, body) = agent.post(Some("s3cret"), ALERT).await;
    assert_eq!((status, body.as_str()), (200, "{\"accepted\":1}\n"));
    let d = agent.detections.recv().await.unwrap();
    assert_eq!(d.origin, Origin::Falco);
    assert_eq!(d.rule, "Terminal shell in container");
    let Subject::Pod(pod) = &d.subject else {
        panic!("{:?}", d.subject)
    };
    assert_eq!(
        (pod.namespace.as_str(), pod.name.as_str()),
        ("shop", "juice-shop-6f7d9")
    );

    let batch = format!("[{ALERT},{ALERT},{ALERT}]");
    let (status, body) = agent.post(Some("s3cret"), &batch).await;
    assert_eq!((status, body.as_str()), (200, "{\"accepted\":3}\n"));
    for _ in 0..3 {
        agent.detections.recv().await.unwrap();
    }
    let too_many = format!("[{ALERT},{ALERT},{ALERT},{ALERT}]");
    let (status, body) = agent.post(Some("s3cret"), &too_many).await;
    assert_eq!(status, 400);
    assert!(body.contains("more than the 3 allowed"), "{body}");
    agent.stop().await;
}

#[tokio::test]
async fn refuses_with_reasons_and_counts() {
    let (_dir, token) = token_dir("s3cret");
    let agent = Agent::start(&token, 2048, 16).await;

    let (status, body) = agent.post(None, ALERT).await;
    assert_eq!(status, 401);
    assert!(body.contains("Bearer"), "{body}");
    let (status, _) = agent.post(Some("wrong"), ALERT).await;
    assert_eq!(status, 401);

    let (status, body) = agent.post(Some("s3cret"), "{\"rule\": ").await;
    assert_eq!(status, 400);
    assert!(body.starts_with("not JSON"), "{body}");

    let bad = ALERT.replace("\"Notice\",\"rule\"", "\"Loud\",\"rule\"");
    let (status, body) = agent.post(Some("s3cret"), &bad).await;
    assert_eq!(status, 400);
    assert!(body.contains("'priority'"), "{body}");

    // Declared too large: refused before reading.
    let big = format!("[{}]", [ALERT; 10].join(","));
    let (status, body) = agent.post(Some("s3cret"), &big).await;
    assert_eq!(status, 413);
    assert!(body.contains("max_body_bytes (2048)"), "{body}");
    // Streamed (chunked) past the limit: refused while reading.
    let chunk = "x".repeat(1500);
    let raw = format!(
        "POST /falco HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer s3cret\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{len:x}\r\n{chunk}\r\n{len:x}\r\n{chunk}\r\n0\r\n\r\n",
        len = chunk.len()
    );
    let (status, _) = agent.request(raw.into_bytes()).await;
    assert_eq!(status, 413);

    let (status, _) = agent
        .request(b"GET /falco HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".to_vec())
        .await;
    assert_eq!(status, 405);

    let metrics = agent.metrics().await;
    for line in [
        "youwatch_falco_requests_rejected_total{reason=\"unauthorized\"} 2",
        "youwatch_falco_requests_rejected_total{reason=\"bad_json\"} 1",
        "youwatch_falco_requests_rejected_total{reason=\"invalid_alert\"} 1",
        "youwatch_falco_requests_rejected_total{reason=\"too_large\"} 2",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
    agent.stop().await;
}

/// Falco's own http_output cannot set headers; libcurl sends the URL's credentials
/// (`http://falco:<token>@agent:9376/falco`) as HTTP Basic.
#[tokio::test]
async fn accepts_the_token_as_basic_credentials() {
    let (_dir, token) = token_dir("s3cret");
    let mut agent = Agent::start(&token, 64 * 1024, 16).await;
    let raw = format!(
        "POST /falco HTTP/1.1\r\nHost: agent\r\nAuthorization: Basic ZmFsY286czNjcmV0\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{ALERT}",
        ALERT.len()
    );
    assert_eq!(agent.request(raw.into_bytes()).await.0, 200);
    assert_eq!(
        agent.detections.recv().await.unwrap().rule,
        "Terminal shell in container"
    );
    agent.stop().await;
}

#[tokio::test]
async fn a_body_that_never_arrives_is_408() {
    let (_dir, token) = token_dir("t");
    let agent = Agent::start(&token, 64 * 1024, 16).await;
    let started = std::time::Instant::now();
    // Announces 500 bytes, sends 10, then waits.
    let raw = "POST /falco HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer t\r\nContent-Length: 500\r\n\r\n{\"rule\":\"";
    let (status, body) = agent.request(raw.as_bytes().to_vec()).await;
    assert_eq!(status, 408, "{body}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(agent.metrics().await.contains("reason=\"slow_body\"} 1"));
    agent.stop().await;
}

#[tokio::test]
async fn follows_token_rotation() {
    let (dir, token) = token_dir("first");
    let agent = Agent::start(&token, 64 * 1024, 16).await;
    assert_eq!(agent.post(Some("first"), ALERT).await.0, 200);
    // A Secret update: the new file is swapped in.
    let new = dir.path().join("token.tmp");
    std::fs::write(&new, "second").unwrap();
    std::fs::rename(&new, &token).unwrap();
    assert_eq!(agent.post(Some("first"), ALERT).await.0, 401);
    assert_eq!(agent.post(Some("second"), ALERT).await.0, 200);
    // The token file disappears: the agent says it cannot check, not that the client is wrong.
    std::fs::remove_file(&token).unwrap();
    let (status, body) = agent.post(Some("second"), ALERT).await;
    assert_eq!(status, 503);
    assert!(body.contains("token"), "{body}");
    agent.stop().await;
}

#[tokio::test]
async fn answers_only_once_every_listener_took_the_alerts() {
    let (_dir, token) = token_dir("t");
    let config = FalcoConfig {
        webhook: WebhookConfig {
            enabled: true,
            token_file: token.clone(),
            ..WebhookConfig::default()
        },
        ..FalcoConfig::default()
    };
    let mut builder = BusBuilder::new(BusMetrics::default());
    let mut response = builder.listen("response", 1, Delivery::Lossless);
    let router = config
        .webhook_router(true, builder.build(), FalcoMetrics::default())
        .unwrap()
        .unwrap();
    let listener = http::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = http::router(Arc::new(Registry::default()), router);
    tokio::spawn(http::serve(listener, app, std::future::pending()));
    let post = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let body = format!("[{ALERT},{ALERT}]");
        let raw = format!(
            "POST /falco HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(raw.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    });
    // A queue of one: the second alert waits for room (back-pressure, never a drop), and the
    // answer waits until both were taken.
    let first = response.recv().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!post.is_finished(), "answered before the alerts were taken");
    first.done();
    response.recv().await.unwrap().done();
    let answer = post.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"accepted\":2"), "{answer}");
}

#[tokio::test]
async fn refuses_to_start_without_a_token() {
    let config = FalcoConfig {
        webhook: WebhookConfig {
            enabled: true,
            ..WebhookConfig::default()
        },
        ..FalcoConfig::default()
    };
    let (bus, _rx) = support::bus::single(1);
    let err = config
        .webhook_router(true, bus.clone(), FalcoMetrics::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("token_file"), "{err}");
    let config = FalcoConfig {
        webhook: WebhookConfig {
            enabled: true,
            token_file: "/nonexistent/token".into(),
            ..WebhookConfig::default()
        },
        ..FalcoConfig::default()
    };
    let err = config
        .webhook_router(true, bus, FalcoMetrics::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/token"), "{err}");
}
