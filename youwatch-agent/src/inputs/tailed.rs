//! The tailed-input runner: follow a file, turn each line into detections with a
//! [`LineDecoder`], publish them on the bus, and save the cursor only once every listener has
//! taken the batch (the response stage journaled its decisions, the alert writer wrote its
//! lines). So a restart — `kill -9` included — never skips an entry whose detection was not
//! taken, and repeats at most the batch in flight. The WAF audit log and Falco's
//! `file_output` both run on it.
//!
//! While the listeners take a batch, the file is read ahead into memory (bounded), so a
//! copytruncate can only take what the writer appends between its copy and its truncation.
//! A full listener queue makes the reading wait (back-pressure), never drop. On stop the
//! runner reads no more, finishes publishing the batch in hand, waits (at most
//! [`STOP_GRACE`]) for it to be taken, saves the cursor, and ends. A `kill -9` (or a stop
//! whose batch is not taken in time) leaves the cursor before that batch: it is read again at
//! the next start, so at most one batch — one read of `read_chunk_bytes` of lines — is
//! repeated, and nothing is lost.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use crate::{
    bus::{Abandoned, Bus, Receipt},
    detection::Detection,
    stage::{StageHandle, StopSignal},
    tail::{FollowOptions, Follower, Position, TailError, TailMetrics},
};

/// How long the runner waits for lines before it looks at the stop signal again.
const STOP_CHECK: Duration = Duration::from_millis(200);
/// While the listeners take a batch, the file is read ahead this often (what is read cannot
/// be lost to a copytruncate any more).
const READ_AHEAD_EVERY: Duration = Duration::from_millis(1);
/// Once stopping, how long the last batch may take to be taken by every listener before the
/// runner ends without saving the cursor past it (the response stage then still has its own
/// `shutdown_grace` within the pod's termination grace).
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Turns the lines of one input into detections.
pub trait LineDecoder: Send + 'static {
    /// Called before each batch's lines (e.g. to read the clock once per batch).
    fn begin_batch(&mut self) {}
    /// Appends the detections `line` is worth (often none) to `out`. Bad lines are the
    /// decoder's to count and skip: the runner never stops on one.
    fn decode(&mut self, line: &[u8], out: &mut Vec<Detection>);
}

/// A file input ready to run.
pub struct TailedInput<D> {
    /// Thread name and log label (`waf`, `falco-file`).
    pub name: &'static str,
    pub follow: FollowOptions,
    pub decoder: D,
    pub metrics: TailMetrics,
}

impl<D: LineDecoder> TailedInput<D> {
    /// Opens the file (a bad path or cursor fails here, by name) and starts the thread.
    pub fn spawn(self, bus: Bus) -> Result<StageHandle, TailError> {
        let follower = Follower::open(self.follow.clone(), self.metrics.clone())?;
        tracing::info!(
            input = self.name,
            path = %self.follow.path.display(),
            cursor = %self.follow.cursor_file.as_deref().map(PathBuf::from).unwrap_or_default().display(),
            inotify = follower.uses_inotify(),
            "following a file"
        );
        let stop = StopSignal::new();
        let name = self.name;
        let runner = Runner {
            name,
            poll_interval: self.follow.poll_interval,
            decoder: self.decoder,
            follower,
            bus,
            stop: stop.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || runner.run())
            .map_err(|source| TailError::Read {
                path: self.follow.path.clone(),
                source,
            })?;
        Ok(StageHandle::thread(name, stop, thread))
    }
}

/// Why the last batch was not taken.
#[derive(Debug, thiserror::Error)]
enum Untaken {
    #[error("a listener stopped before taking the last batch")]
    Abandoned,
    #[error("the listeners did not take the last batch within {}s of the stop", STOP_GRACE.as_secs())]
    TimedOut,
}

struct Runner<D> {
    name: &'static str,
    poll_interval: Duration,
    decoder: D,
    follower: Follower,
    bus: Bus,
    stop: StopSignal,
}

impl<D: LineDecoder> Runner<D> {
    fn run(mut self) {
        let mut unreadable = false;
        let mut commit_failing = false;
        let mut out = Vec::new();
        while !self.stop.is_stopped() {
            let batch = match self.follower.next_batch(STOP_CHECK) {
                Ok(batch) => batch,
                Err(e) => {
                    if !std::mem::replace(&mut unreadable, true) {
                        tracing::error!(input = self.name, error = %e, "unreadable; retrying");
                    }
                    std::thread::sleep(self.poll_interval.min(STOP_CHECK));
                    continue;
                }
            };
            if std::mem::replace(&mut unreadable, false) {
                tracing::info!(input = self.name, "readable again");
            }
            let Some(end) = batch.end() else { continue };
            self.decoder.begin_batch();
            let receipt = Receipt::new();
            let mut published = true;
            'lines: for line in batch {
                self.decoder.decode(line.bytes, &mut out);
                for d in out.drain(..) {
                    if self.bus.blocking_publish(d, &receipt).is_err() {
                        published = false;
                        break 'lines;
                    }
                }
            }
            out.clear();
            // Every listener must have taken the batch before the cursor moves past it.
            let taken = if published {
                self.settled(&receipt)
            } else {
                Err(Untaken::Abandoned)
            };
            if let Err(why) = taken {
                tracing::warn!(
                    input = self.name,
                    "{why}; the last batch is read again at the next start"
                );
                return;
            }
            self.commit(end, &mut commit_failing);
        }
        tracing::info!(input = self.name, "stopped; cursor saved");
    }

    /// Waits until every listener has taken the batch, reading ahead meanwhile; once
    /// stopping, no more reading and [`STOP_GRACE`] at most.
    fn settled(&mut self, receipt: &Receipt) -> Result<(), Untaken> {
        let mut stopping_since: Option<Instant> = None;
        loop {
            let slice = if self.stop.is_stopped() {
                if stopping_since.get_or_insert_with(Instant::now).elapsed() >= STOP_GRACE {
                    return Err(Untaken::TimedOut);
                }
                STOP_CHECK
            } else {
                // A read error shows again, and is reported, at the next batch.
                let _ = self.follower.read_ahead();
                READ_AHEAD_EVERY
            };
            if let Some(result) = receipt.wait_timeout(slice) {
                return result.map_err(|Abandoned| Untaken::Abandoned);
            }
        }
    }

    /// Saves the cursor; a failure is logged once until saving works again.
    fn commit(&mut self, end: Position, failing: &mut bool) {
        match self.follower.commit(end) {
            Err(e) if !std::mem::replace(failing, true) => {
                tracing::warn!(input = self.name, error = %e, "cannot save the tail cursor; a restart may read some lines again");
            }
            Err(_) => {}
            Ok(()) => *failing = false,
        }
    }
}
