//! Async ring-buffer reader: kernel records → decoded events on a bounded channel.
//!
//! When the channel is full the reader waits; the ring buffer then fills and the kernel counts
//! what it cannot store (`RINGBUF_FULL`). Nothing is dropped in user space without a count.

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, watch},
};

use super::decode::{BootClock, decode};
use crate::event::ExecEvent;

/// Records decoded per wake-up before they are handed on (keeps the ring moving in bursts).
const BATCH: usize = 256;

/// Tells the reader to drain what is left in the ring and stop. Send it after the program is
/// detached, so that nothing arrives after the final drain.
pub struct StopReader(watch::Sender<bool>);

impl StopReader {
    pub fn stop(self) {
        let _ = self.0.send(true);
    }
}

/// Spawns the reader on the current Tokio runtime. It ends when the receiver is dropped, or
/// after [`StopReader::stop`] once the ring is drained (then the channel closes).
pub fn spawn_reader(
    ring: RingBuf<MapData>,
    capacity: usize,
) -> std::io::Result<(mpsc::Receiver<ExecEvent>, StopReader)> {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let (stop_tx, mut stop_rx) = watch::channel(false);
    // SAFETY: the RingBuf owns its map fd and the AsyncFd owns the RingBuf, so the fd stays
    // open and the same for the AsyncFd's whole life.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)?;
    tokio::spawn(async move {
        loop {
            let batch = tokio::select! {
                guard = fd.readable_mut() => {
                    let mut guard = match guard {
                        Ok(guard) => guard,
                        Err(err) => {
                            tracing::error!(%err, "exec ring buffer became unreadable; exec events stop");
                            return;
                        }
                    };
                    let batch = read_batch(guard.get_inner_mut(), BATCH);
                    if batch.len() < BATCH {
                        guard.clear_ready();
                    }
                    batch
                }
                _ = stop_rx.changed() => {
                    // The program is detached: whatever is in the ring is all there will be.
                    let rest = read_batch(fd.get_mut(), usize::MAX);
                    send_all(&tx, rest).await;
                    return;
                }
            };
            if !send_all(&tx, batch).await {
                return;
            }
        }
    });
    Ok((rx, StopReader(stop_tx)))
}

/// Decodes up to `max` records. Each record is released back to the kernel as it is decoded.
fn read_batch(ring: &mut RingBuf<MapData>, max: usize) -> Vec<ExecEvent> {
    let clock = BootClock::now();
    let mut batch = Vec::new();
    while batch.len() < max {
        let Some(record) = ring.next() else { break };
        match decode(&record, clock) {
            Ok(event) => batch.push(event),
            Err(err) => tracing::error!(%err, "dropping an undecodable exec record"),
        }
    }
    batch
}

/// False when the receiver is gone.
async fn send_all(tx: &mpsc::Sender<ExecEvent>, batch: Vec<ExecEvent>) -> bool {
    for event in batch {
        if tx.send(event).await.is_err() {
            return false;
        }
    }
    true
}
