//! The detection bus: every detecting stage (own rules, the Falco inputs, WAF scoring)
//! publishes [`Detection`]s here, and the bus fans each one out to its listeners (the
//! response stage, the alert writer), each through its own bounded queue.
//!
//! Listeners differ in what they may lose ([`Delivery`]):
//! - [`Delivery::Lossless`] (the response stage): never dropped. A full queue makes the
//!   producer wait: back-pressure reaches the ring-buffer reader, the tail, the webhook.
//! - [`Delivery::BestEffort`] (the alert writer): a producer that can wait (a tailed file, the
//!   webhook) waits; one that must not stall (the exec path, whose response must not queue
//!   behind a slow alert pipe) drops on a full queue, counted and logged at a bounded rate.
//!
//! A producer that must know when its detections are taken (a tailed input saves its cursor
//! only then) publishes with a [`Receipt`] and waits on it.

mod receipt;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::sync::mpsc;

pub use receipt::{Abandoned, Receipt, Token};

use crate::detection::Detection;

/// What a listener may lose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Never dropped: producers wait for room.
    Lossless,
    /// Producers that can wait do; producers that cannot drop, counted and logged.
    BestEffort,
}

/// One detection on its way to one listener.
#[derive(Debug)]
pub struct Envelope {
    pub detection: Arc<Detection>,
    token: Option<Token>,
}

impl Envelope {
    /// An envelope nobody waits for (tests, tools that feed a listener directly).
    pub fn untracked(detection: Detection) -> Envelope {
        Envelope {
            detection: Arc::new(detection),
            token: None,
        }
    }

    /// Tells the producer this listener has taken the detection (journaled, written...).
    /// Dropping an envelope without calling it tells the producer it was not.
    pub fn done(mut self) {
        if let Some(token) = self.token.take() {
            token.done();
        }
    }
}

/// A listener's receiving end.
pub type Listener = mpsc::Receiver<Envelope>;

#[derive(Debug, thiserror::Error)]
#[error("the {listener} listener has stopped; the detection was not delivered")]
pub struct Closed {
    pub listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabel {
    listener: &'static str,
}

/// The bus's metrics, by listener.
#[derive(Clone, Debug, Default)]
pub struct BusMetrics {
    delivered: Family<ListenerLabel, Counter>,
    dropped: Family<ListenerLabel, Counter>,
    waited: Family<ListenerLabel, Counter>,
    queued: Family<ListenerLabel, Gauge>,
}

impl BusMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "youwatch_bus_delivered",
            "Detections queued for a listener (response, alerts)",
            self.delivered.clone(),
        );
        registry.register(
            "youwatch_bus_dropped",
            "Detections a best-effort listener (alerts) lost because its queue was full and the producer could not wait",
            self.dropped.clone(),
        );
        registry.register(
            "youwatch_bus_producer_waits",
            "Times a producer waited for room in a listener's queue (back-pressure)",
            self.waited.clone(),
        );
        registry.register(
            "youwatch_bus_queued",
            "Detections in a listener's queue, sampled at each publish",
            self.queued.clone(),
        );
    }

    /// Detections dropped for `listener` so far.
    pub fn dropped(&self, listener: &'static str) -> u64 {
        self.dropped
            .get_or_create(&ListenerLabel { listener })
            .get()
    }
}

/// How often a listener's drops are logged at most.
const DROP_LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Outlet {
    name: &'static str,
    delivery: Delivery,
    tx: mpsc::Sender<Envelope>,
    capacity: usize,
    label: ListenerLabel,
    /// Drops not logged yet, and when the last warning went out (ms since `epoch`).
    unlogged: AtomicU64,
    last_log_ms: AtomicU64,
}

/// Registers listeners, then builds the [`Bus`].
#[derive(Debug)]
pub struct BusBuilder {
    outlets: Vec<Outlet>,
    metrics: BusMetrics,
}

impl BusBuilder {
    pub fn new(metrics: BusMetrics) -> BusBuilder {
        BusBuilder {
            outlets: Vec::new(),
            metrics,
        }
    }

    /// Adds a listener with a queue of `capacity` detections (at least 1).
    pub fn listen(&mut self, name: &'static str, capacity: usize, delivery: Delivery) -> Listener {
        let capacity = capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        self.outlets.push(Outlet {
            name,
            delivery,
            tx,
            capacity,
            label: ListenerLabel { listener: name },
            unlogged: AtomicU64::new(0),
            last_log_ms: AtomicU64::new(0),
        });
        rx
    }

    pub fn build(self) -> Bus {
        Bus {
            shared: Arc::new(Shared {
                outlets: self.outlets,
                metrics: self.metrics,
                epoch: Instant::now(),
            }),
        }
    }
}

#[derive(Debug)]
struct Shared {
    outlets: Vec<Outlet>,
    metrics: BusMetrics,
    epoch: Instant,
}

impl Drop for Shared {
    /// Drops since the last warning are said when the bus closes, not only at the next drop.
    fn drop(&mut self) {
        for outlet in &self.outlets {
            let n = outlet.unlogged.swap(0, Ordering::Relaxed);
            if n > 0 {
                tracing::warn!(
                    listener = outlet.name,
                    dropped = n,
                    "detections dropped since the last warning: the {} queue was full",
                    outlet.name
                );
            }
        }
    }
}

/// Where producers publish; cheap to clone. Listeners' queues close when every clone is
/// dropped, after the listeners have received what was queued.
#[derive(Clone, Debug)]
pub struct Bus {
    shared: Arc<Shared>,
}

impl Bus {
    /// For the readiness check: whether every listener is alive and no lossless queue is
    /// full (producers would wait). Holds the bus only while it runs, so it never keeps the
    /// listeners' queues open at shutdown.
    pub fn flowing_probe(&self) -> impl Fn() -> Result<(), String> + Send + Sync + 'static {
        let shared = Arc::downgrade(&self.shared);
        move || {
            let shared = shared.upgrade().ok_or("the detection bus is closed")?;
            for outlet in &shared.outlets {
                if outlet.tx.is_closed() {
                    return Err(format!("the {} listener has stopped", outlet.name));
                }
                if outlet.delivery == Delivery::Lossless && outlet.tx.capacity() == 0 {
                    return Err(format!(
                        "the {} listener's queue is full ({} detections): producers wait",
                        outlet.name, outlet.capacity
                    ));
                }
            }
            Ok(())
        }
    }
}

/// Whether the producer may wait for a best-effort listener.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Producer {
    MustNotStall,
    CanWait,
}

impl Bus {
    /// Publishes from a producer that must not stall on best-effort listeners (the exec
    /// path): waits for lossless listeners only.
    pub async fn publish(&self, detection: Detection) -> Result<(), Closed> {
        self.publish_async(detection, None, Producer::MustNotStall)
            .await
    }

    /// Publishes from async code that can wait for every listener (the webhook), with a
    /// token of `receipt` per listener when there is one.
    pub async fn publish_waiting(
        &self,
        detection: Detection,
        receipt: Option<&Receipt>,
    ) -> Result<(), Closed> {
        self.publish_async(detection, receipt, Producer::CanWait)
            .await
    }

    /// The same bus without its lossless listeners: for the response stage's reports of
    /// what it did, which must reach the alert output but never the response stage itself.
    pub fn reports_only(&self) -> Bus {
        let outlets = self
            .shared
            .outlets
            .iter()
            .filter(|o| o.delivery == Delivery::BestEffort)
            .map(|o| Outlet {
                name: o.name,
                delivery: o.delivery,
                tx: o.tx.clone(),
                capacity: o.capacity,
                label: o.label.clone(),
                unlogged: AtomicU64::new(0),
                last_log_ms: AtomicU64::new(0),
            })
            .collect();
        Bus {
            shared: Arc::new(Shared {
                outlets,
                metrics: self.shared.metrics.clone(),
                epoch: self.shared.epoch,
            }),
        }
    }

    /// Publishes from a thread outside the async runtime (tailed inputs), waiting for room in
    /// every listener, with a token of `receipt` per listener.
    pub fn blocking_publish(&self, detection: Detection, receipt: &Receipt) -> Result<(), Closed> {
        let detection = Arc::new(detection);
        for outlet in &self.shared.outlets {
            let envelope = Envelope {
                detection: detection.clone(),
                token: Some(receipt.token()),
            };
            let Some(envelope) = self.try_deliver(outlet, envelope)? else {
                continue;
            };
            self.shared
                .metrics
                .waited
                .get_or_create(&outlet.label)
                .inc();
            outlet.tx.blocking_send(envelope).map_err(|_| Closed {
                listener: outlet.name,
            })?;
            self.delivered(outlet);
        }
        Ok(())
    }

    async fn publish_async(
        &self,
        detection: Detection,
        receipt: Option<&Receipt>,
        producer: Producer,
    ) -> Result<(), Closed> {
        let detection = Arc::new(detection);
        for outlet in &self.shared.outlets {
            let envelope = Envelope {
                detection: detection.clone(),
                token: receipt.map(Receipt::token),
            };
            let Some(envelope) = self.try_deliver(outlet, envelope)? else {
                continue;
            };
            if outlet.delivery == Delivery::BestEffort && producer == Producer::MustNotStall {
                // Dropped unsettled: a receipt, if any, reports it as not taken.
                drop(envelope);
                self.dropped(outlet);
                continue;
            }
            self.shared
                .metrics
                .waited
                .get_or_create(&outlet.label)
                .inc();
            outlet.tx.send(envelope).await.map_err(|_| Closed {
                listener: outlet.name,
            })?;
            self.delivered(outlet);
        }
        Ok(())
    }

    /// Queues without waiting; hands the envelope back when the queue is full. A closed
    /// lossless listener is an error; a closed best-effort one drops the envelope unsettled
    /// (a receipt reports the loss).
    fn try_deliver(&self, outlet: &Outlet, envelope: Envelope) -> Result<Option<Envelope>, Closed> {
        match outlet.tx.try_send(envelope) {
            Ok(()) => {
                self.delivered(outlet);
                Ok(None)
            }
            Err(mpsc::error::TrySendError::Full(envelope)) => Ok(Some(envelope)),
            Err(mpsc::error::TrySendError::Closed(_)) if outlet.delivery == Delivery::Lossless => {
                Err(Closed {
                    listener: outlet.name,
                })
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.dropped(outlet);
                Ok(None)
            }
        }
    }

    fn delivered(&self, outlet: &Outlet) {
        let m = &self.shared.metrics;
        m.delivered.get_or_create(&outlet.label).inc();
        let queued = outlet.capacity - outlet.tx.capacity();
        m.queued
            .get_or_create(&outlet.label)
            .set(i64::try_from(queued).unwrap_or(i64::MAX));
    }

    fn dropped(&self, outlet: &Outlet) {
        self.shared
            .metrics
            .dropped
            .get_or_create(&outlet.label)
            .inc();
        outlet.unlogged.fetch_add(1, Ordering::Relaxed);
        let now = u64::try_from(self.shared.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = outlet.last_log_ms.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= DROP_LOG_EVERY.as_millis() as u64;
        if due
            && outlet
                .last_log_ms
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let n = outlet.unlogged.swap(0, Ordering::Relaxed);
            tracing::warn!(
                listener = outlet.name,
                dropped = n,
                queue = outlet.capacity,
                "detections dropped: the {} queue is full (raise its queue size or speed up its output)",
                outlet.name
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::detection::{Origin, Priority, Subject};

    fn detection(rule: &str) -> Detection {
        Detection {
            time: SystemTime::UNIX_EPOCH,
            origin: Origin::Rules,
            rule: rule.into(),
            priority: Priority::Critical,
            output: String::new(),
            tags: Vec::new(),
            output_fields: Default::default(),
            subject: Subject::None,
        }
    }

    fn bus(capacity: usize) -> (Bus, Listener, Listener, BusMetrics) {
        let metrics = BusMetrics::default();
        let mut b = BusBuilder::new(metrics.clone());
        let response = b.listen("response", capacity, Delivery::Lossless);
        let alerts = b.listen("alerts", capacity, Delivery::BestEffort);
        (b.build(), response, alerts, metrics)
    }

    #[tokio::test]
    async fn the_probe_says_when_the_bus_does_not_flow() {
        let (bus, mut response, alerts, _) = bus(1);
        let flowing = bus.flowing_probe();
        assert_eq!(flowing(), Ok(()));
        bus.publish(detection("a")).await.unwrap();
        let full = flowing().unwrap_err();
        assert!(full.contains("response listener's queue is full"), "{full}");
        response.recv().await.unwrap();
        assert_eq!(flowing(), Ok(()));
        drop(alerts);
        assert!(
            flowing()
                .unwrap_err()
                .contains("alerts listener has stopped")
        );
        drop(bus);
        assert!(flowing().is_err(), "a probe must not keep the bus open");
    }

    #[tokio::test]
    async fn fans_out_to_every_listener() {
        let (bus, mut response, mut alerts, _) = bus(4);
        bus.publish(detection("a")).await.unwrap();
        assert_eq!(response.recv().await.unwrap().detection.rule, "a");
        assert_eq!(alerts.recv().await.unwrap().detection.rule, "a");
    }

    #[tokio::test]
    async fn realtime_producer_drops_only_best_effort() {
        let (bus, mut response, _alerts, metrics) = bus(1);
        bus.publish(detection("a")).await.unwrap();
        // Alerts full: dropped and counted. Response full: the producer waits for room.
        let publisher = tokio::spawn({
            let bus = bus.clone();
            async move { bus.publish(detection("b")).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!publisher.is_finished(), "waits for the lossless listener");
        assert_eq!(response.recv().await.unwrap().detection.rule, "a");
        publisher.await.unwrap().unwrap();
        assert_eq!(response.recv().await.unwrap().detection.rule, "b");
        assert_eq!(metrics.dropped("alerts"), 1);
        assert_eq!(metrics.dropped("response"), 0);
    }

    #[test]
    fn blocking_producer_waits_for_everyone_and_gets_a_receipt() {
        let (bus, mut response, mut alerts, metrics) = bus(1);
        let receipt = Receipt::new();
        let producer = std::thread::spawn({
            let (bus, receipt) = (bus.clone(), receipt.clone());
            move || {
                for rule in ["a", "b", "c"] {
                    bus.blocking_publish(detection(rule), &receipt).unwrap();
                }
            }
        });
        let mut seen = Vec::new();
        for _ in 0..3 {
            let r = response.blocking_recv().unwrap();
            let a = alerts.blocking_recv().unwrap();
            seen.push(r.detection.rule.clone());
            r.done();
            a.done();
        }
        producer.join().unwrap();
        assert_eq!(seen, ["a", "b", "c"]);
        assert_eq!(receipt.wait(), Ok(()));
        assert_eq!(metrics.dropped("alerts"), 0);
    }

    #[test]
    fn a_listener_that_stops_abandons_the_receipt() {
        let (bus, response, alerts, _) = bus(4);
        let receipt = Receipt::new();
        bus.blocking_publish(detection("a"), &receipt).unwrap();
        drop(alerts); // its queued envelope goes unsettled
        let mut response = response;
        response.blocking_recv().unwrap().done();
        assert_eq!(receipt.wait(), Err(Abandoned));
        assert!(bus.blocking_publish(detection("b"), &receipt).is_ok());
    }
}
