//! The exec sensor under test: load it, and wait for the events a test expects.

use std::time::Duration;

use tokio::sync::mpsc::Receiver;
use youwatch_agent::{
    event::ExecEvent,
    sensor::{SensorConfig, ebpf::ExecSensor},
};

pub fn sensor(
    ring_buffer_bytes: u32,
    channel_capacity: usize,
) -> (ExecSensor, Receiver<ExecEvent>) {
    let config = SensorConfig {
        ring_buffer_bytes,
        channel_capacity,
        ..SensorConfig::default()
    };
    let mut sensor = ExecSensor::load(&config).expect("loading the exec sensor");
    let rx = sensor.events(channel_capacity).unwrap();
    (sensor, rx)
}

/// Receives events until one matches `done`; returns all of them. Panics after 10 s.
pub async fn until(
    rx: &mut Receiver<ExecEvent>,
    done: impl Fn(&ExecEvent) -> bool,
) -> Vec<ExecEvent> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ev)) => {
                let last = done(&ev);
                seen.push(ev);
                if last {
                    return seen;
                }
            }
            Ok(None) => panic!("event channel closed; seen so far: {seen:#?}"),
            Err(_) => panic!("no matching event within 10 s; seen: {seen:#?}"),
        }
    }
}

/// Receives whatever arrives until the channel stays quiet for `quiet`.
pub async fn drain(rx: &mut Receiver<ExecEvent>, quiet: Duration) -> Vec<ExecEvent> {
    let mut seen = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(quiet, rx.recv()).await {
        seen.push(ev);
    }
    seen
}

pub fn has_arg(ev: &ExecEvent, arg: &str) -> bool {
    ev.argv.iter().any(|a| a == arg)
}
