//! Async ring-buffer reader: kernel records → decoded events on a bounded channel.
//!
//! When the channel is full the reader waits; the ring buffer then fills and the kernel counts
//! what it cannot store (`RINGBUF_FULL`). Nothing is dropped in user space without a count.

use aya::maps::{MapData, RingBuf};
use tokio::{io::unix::AsyncFd, sync::mpsc};

use super::decode::{BootClock, decode};
use crate::event::ExecEvent;

/// Spawns the reader on the current Tokio runtime. It ends when the receiver is dropped.
pub fn spawn_reader(
    ring: RingBuf<MapData>,
    capacity: usize,
) -> std::io::Result<mpsc::Receiver<ExecEvent>> {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    // SAFETY: the RingBuf owns its map fd and the AsyncFd owns the RingBuf, so the fd stays
    // open and the same for the AsyncFd's whole life.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)?;
    tokio::spawn(async move {
        loop {
            let mut guard = match fd.readable_mut().await {
                Ok(guard) => guard,
                Err(err) => {
                    tracing::error!(%err, "exec ring buffer became unreadable; exec events stop");
                    return;
                }
            };
            let clock = BootClock::now();
            // Decode a batch without holding the ring across an await.
            let mut batch = Vec::new();
            {
                let ring = guard.get_inner_mut();
                while let Some(record) = ring.next() {
                    match decode(&record, clock) {
                        Ok(event) => batch.push(event),
                        Err(err) => tracing::error!(%err, "dropping an undecodable exec record"),
                    }
                    if batch.len() >= 256 {
                        break;
                    }
                }
            }
            if batch.len() < 256 {
                guard.clear_ready();
            }
            drop(guard);
            for event in batch {
                if tx.send(event).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(rx)
}
