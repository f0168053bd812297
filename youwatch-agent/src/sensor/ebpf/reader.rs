//! Ring-buffer reader: kernel records → decoded events on a bounded channel.
//!
//! A task on the agent's runtime, not a thread of its own: the ring's fd (and the drain timer)
//! sit in the runtime's epoll, so the worker the kernel wakes runs the reader, and the
//! channel's consumer (woken from that worker) runs right after it on the same thread. One
//! thread wake-up per batch, where a reader thread cost three: its own, the worker's, and the
//! second worker tokio wakes when work arrives from outside the runtime. `pacing` says when
//! the reader waits for the kernel's bell and when it drains on its timer. An [`ExecTap`]
//! (enforcement's disarmer) sees each event before the channel, on that worker: a tap that
//! blocked would stall a runtime worker, hence it must not.
//!
//! When the channel is full the reader waits; the ring buffer then fills and the kernel counts
//! what it cannot store (`RINGBUF_FULL`). Nothing is dropped in user space without a count.

use std::time::Instant;

use aya::maps::{Array, MapData, RingBuf};
use prometheus_client::metrics::histogram::Histogram;
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, oneshot},
};

use super::{
    decode::{BootClock, boottime_ns, decode},
    drain_timer::DrainTimer,
    pacing::{Pacer, Pacing, Wait},
};
use crate::event::ExecEvent;

/// Stops the reader: it drains what is left in the ring, then closes the channel. Call it after
/// the program is detached, so that nothing arrives after the final drain.
pub struct StopReader(oneshot::Sender<()>);

impl StopReader {
    pub fn stop(self) {
        // The task may be waiting on a full channel whose receiver is our caller: do not wait
        // for it; it ends on its own once the channel is drained or dropped.
        let _ = self.0.send(());
    }
}

/// The reader's half of the wake-up protocol with the exec program (see its `submit`): the
/// kernel rings the ring buffer's wake-up only while this flag says the reader sleeps.
pub struct WakeFlag(Array<MapData, u32>);

impl WakeFlag {
    pub fn new(map: Array<MapData, u32>) -> Self {
        Self(map)
    }

    /// Tells the kernel whether the reader needs a wake-up; false if the kernel could not be told.
    fn set(&mut self, waiting: bool) -> bool {
        let ok = self.0.set(0, u32::from(waiting), 0).is_ok();
        // The flag store must be visible before the ring is checked again (the next drain).
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        ok
    }
}

/// Sees each event in the reader, before it is queued for the next stage: what must react
/// within the reader's latency, whatever the stages behind it hold (enforcement's disarmer).
/// It runs on a runtime worker and must not block.
pub trait ExecTap: Send + 'static {
    fn on_exec(&mut self, event: &ExecEvent);
}

/// Starts the reader task on the current tokio runtime (the IO driver must be enabled).
pub fn spawn_reader(
    ring: RingBuf<MapData>,
    wake_flag: WakeFlag,
    capacity: usize,
    pacing: Pacing,
    latency: Histogram,
    tap: Option<Box<dyn ExecTap>>,
) -> std::io::Result<(mpsc::Receiver<ExecEvent>, StopReader)> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
        std::io::Error::other("the exec reader is a task: start it from within a tokio runtime")
    })?;
    // SAFETY: the ring buffer keeps its map's fd open, and the same, for as long as it lives.
    let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }?;
    let reader = Reader {
        ring,
        wake_flag,
        timer: DrainTimer::new()?,
        latency,
    };
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let (stop, stopped) = oneshot::channel();
    runtime.spawn(reader.run(Outlet { tx, tap }, stopped, pacing));
    Ok((rx, StopReader(stop)))
}

struct Reader {
    ring: AsyncFd<RingBuf<MapData>>,
    wake_flag: WakeFlag,
    timer: DrainTimer,
    latency: Histogram,
}

/// Where decoded events go: the tap first, then the channel. Kept apart from the reader's
/// own state, which its waits borrow: the tap need not be `Sync`.
struct Outlet {
    tx: mpsc::Sender<ExecEvent>,
    tap: Option<Box<dyn ExecTap>>,
}

impl Outlet {
    /// False when the receiver is gone.
    async fn deliver(&mut self, event: ExecEvent) -> bool {
        if let Some(tap) = self.tap.as_mut() {
            tap.on_exec(&event);
        }
        self.tx.send(event).await.is_ok()
    }
}

impl Reader {
    async fn run(mut self, mut outlet: Outlet, mut stop: oneshot::Receiver<()>, pacing: Pacing) {
        let mut pacer = Pacer::new(pacing, Instant::now());
        // Without the flag the kernel never rings: then the reader stays on its timer.
        let flag_works = self.arm(Wait::Bell, &pacer);
        if !flag_works {
            tracing::error!(
                interval = ?pacer.interval(),
                "cannot ask the exec program for wake-ups; the reader drains on its timer"
            );
            self.arm(Wait::Tick, &pacer);
        }
        // Records stored before the flag was seen rang nothing: look once before waiting.
        let mut wait = if flag_works { Wait::Bell } else { Wait::Tick };
        let mut stopping = false;
        loop {
            let Some(records) = self.drain(&mut outlet).await else {
                return;
            };
            if stopping {
                // The program is detached: what was in the ring is all there will be.
                return;
            }
            let next = if flag_works {
                pacer.drained(records, Instant::now())
            } else {
                Wait::Tick
            };
            if next != wait {
                self.arm(next, &pacer);
                wait = next;
                // Entering Bell: records stored while the flag was down rang nothing.
                if next == Wait::Bell {
                    continue;
                }
            }
            stopping = tokio::select! {
                biased;
                _ = &mut stop => true,
                woken = self.woken(wait) => match woken {
                    Ok(()) => false,
                    Err(err) => {
                        tracing::error!(%err, "waiting on the exec ring buffer failed; exec events stop");
                        return;
                    }
                },
            };
        }
    }

    /// Raises or lowers the kernel's wake-up flag and (dis)arms the timer for `wait`; false
    /// when the kernel could not be told.
    fn arm(&mut self, wait: Wait, pacer: &Pacer) -> bool {
        let (bell, interval) = match wait {
            Wait::Bell => (true, std::time::Duration::ZERO),
            Wait::Tick => (false, pacer.interval()),
        };
        if let Err(err) = self.timer.set(interval) {
            tracing::error!(%err, "setting the exec reader's drain timer failed");
        }
        self.wake_flag.set(bell)
    }

    /// Waits for the kernel's bell or the next timer expiry.
    async fn woken(&self, wait: Wait) -> std::io::Result<()> {
        match wait {
            Wait::Tick => self.timer.tick().await,
            Wait::Bell => {
                // Clearing before the drain is safe: a bell rung during the drain sets the
                // readiness again (at worst one empty drain).
                self.ring.readable().await?.clear_ready();
                Ok(())
            }
        }
    }

    /// Hands every record in the ring to `outlet`: how many, or `None` when the receiver is
    /// gone.
    async fn drain(&mut self, outlet: &mut Outlet) -> Option<usize> {
        let clock = BootClock::now();
        let mut count = 0;
        loop {
            // Decoded and released before a possible wait on a full channel.
            let event = {
                let Some(record) = self.ring.get_mut().next() else {
                    return Some(count);
                };
                count += 1;
                decode(&record, clock)
            };
            match event {
                Ok(event) => {
                    self.latency
                        .observe(boottime_ns().saturating_sub(event.ktime_ns) as f64 / 1e9);
                    if !outlet.deliver(event).await {
                        return None;
                    }
                }
                Err(err) => tracing::error!(%err, "dropping an undecodable exec record"),
            }
        }
    }
}

/// Sets the calling thread's nice value (lower is more urgent). Raising priority needs
/// CAP_SYS_NICE; without it the thread keeps the default, said once.
pub fn set_thread_nice(nice: i32) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    if nice == 0 {
        return;
    }
    // SAFETY: plain syscalls on the calling thread's own id.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        WARNED.call_once(|| {
            tracing::info!(
                nice,
                %err,
                "the agent's workers keep the default priority (raising it needs CAP_SYS_NICE)"
            );
        });
    }
}
