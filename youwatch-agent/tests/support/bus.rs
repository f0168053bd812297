//! A detection bus with one lossless listener that a test reads like a channel: each
//! detection received is acknowledged at once (as the response stage does once it has
//! journaled it), so tailed inputs save their cursor.

use std::time::{Duration, Instant};

use youwatch_agent::{
    bus::{Bus, BusBuilder, BusMetrics, Delivery, Listener},
    detection::Detection,
};

pub struct TestListener {
    rx: Listener,
}

/// A bus whose only listener holds `capacity` detections.
pub fn single(capacity: usize) -> (Bus, TestListener) {
    let mut builder = BusBuilder::new(BusMetrics::default());
    let rx = builder.listen("test", capacity, Delivery::Lossless);
    (builder.build(), TestListener { rx })
}

impl TestListener {
    /// The next detection if one is queued.
    pub fn try_recv(&mut self) -> Option<Detection> {
        let envelope = self.rx.try_recv().ok()?;
        let d = (*envelope.detection).clone();
        envelope.done();
        Some(d)
    }

    /// The next detection, waiting up to `timeout` (panics without one).
    pub fn next(&mut self, timeout: Duration) -> Detection {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(d) = self.try_recv() {
                return d;
            }
            assert!(Instant::now() < deadline, "no detection within {timeout:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Async receive (webhook tests), acknowledged at once.
    pub async fn recv(&mut self) -> Option<Detection> {
        let envelope = self.rx.recv().await?;
        let d = (*envelope.detection).clone();
        envelope.done();
        Some(d)
    }
}
