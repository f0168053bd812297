//! One lifecycle for every stage: build it (configuration errors surface here, by name),
//! register its metrics, spawn it, and keep the [`StageHandle`] it returns. `run.rs` stops
//! the producers first, lets the bus drain, then stops the listeners.
//!
//! A stage runs on its own thread (blocking work: file reads, parsing) or as a task; either
//! way the handle asks it to stop through a [`StopSignal`] and joins it.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use tokio::sync::Notify;

/// A stop request, shared by a stage and its handle; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct StopSignal {
    inner: Arc<StopInner>,
}

#[derive(Debug, Default)]
struct StopInner {
    stopped: AtomicBool,
    notify: Notify,
}

impl StopSignal {
    pub fn new() -> StopSignal {
        StopSignal::default()
    }

    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::Release);
        self.inner.notify.notify_waiters();
    }

    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::Acquire)
    }

    /// Resolves once [`stop`](Self::stop) was called (at once if it already was).
    pub async fn stopped(&self) {
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }

    /// Spawns `work` as a task that ends at the latest on [`stop`](Self::stop).
    pub fn spawn_until(&self, work: impl Future<Output = ()> + Send + 'static) -> Task {
        let stop = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.stopped() => {}
                _ = work => {}
            }
        })
    }
}

/// A stage's background task.
pub type Task = tokio::task::JoinHandle<()>;

#[derive(Debug)]
enum Running {
    Thread(std::thread::JoinHandle<()>),
    Task(tokio::task::JoinHandle<()>),
}

/// A running stage.
#[derive(Debug)]
pub struct StageHandle {
    name: &'static str,
    stop: StopSignal,
    running: Running,
}

#[derive(Debug, thiserror::Error)]
#[error("the {stage} stage panicked")]
pub struct StagePanicked {
    pub stage: &'static str,
}

impl StageHandle {
    pub fn thread(
        name: &'static str,
        stop: StopSignal,
        thread: std::thread::JoinHandle<()>,
    ) -> StageHandle {
        StageHandle {
            name,
            stop,
            running: Running::Thread(thread),
        }
    }

    pub fn task(
        name: &'static str,
        stop: StopSignal,
        task: tokio::task::JoinHandle<()>,
    ) -> StageHandle {
        StageHandle {
            name,
            stop,
            running: Running::Task(task),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// A stage made of background tasks that end on `stop`: once stopped, waits for each of
    /// them, then for `after` (what the stage releases last).
    pub fn tasks(
        name: &'static str,
        stop: StopSignal,
        tasks: Vec<Task>,
        after: impl Future<Output = ()> + Send + 'static,
    ) -> StageHandle {
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                stop.stopped().await;
                for task in tasks {
                    let _ = task.await;
                }
                after.await;
            }
        });
        StageHandle::task(name, stop, task)
    }

    /// Asks the stage to stop; it finishes what it has in hand.
    pub fn stop(&self) {
        self.stop.stop();
    }

    pub fn is_finished(&self) -> bool {
        match &self.running {
            Running::Thread(t) => t.is_finished(),
            Running::Task(t) => t.is_finished(),
        }
    }

    /// Waits for the stage to end (after [`stop`](Self::stop), or on its own when its input
    /// closes).
    pub async fn join(self) -> Result<(), StagePanicked> {
        let stage = self.name;
        let ok = match self.running {
            Running::Thread(t) => tokio::task::spawn_blocking(move || t.join().is_ok())
                .await
                .unwrap_or(false),
            Running::Task(t) => t.await.is_ok(),
        };
        if ok {
            tracing::debug!(stage, "stage stopped");
            Ok(())
        } else {
            tracing::error!(stage, "stage panicked");
            Err(StagePanicked { stage })
        }
    }

    /// [`stop`](Self::stop), then [`join`](Self::join).
    pub async fn shutdown(self) -> Result<(), StagePanicked> {
        self.stop();
        self.join().await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn thread_and_task_stages_stop() {
        let stop = StopSignal::new();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.is_stopped() {
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        StageHandle::thread("t", stop, thread)
            .shutdown()
            .await
            .unwrap();

        let stop = StopSignal::new();
        let flag = stop.clone();
        let task = tokio::spawn(async move { flag.stopped().await });
        StageHandle::task("k", stop, task).shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn a_panic_is_reported_by_name() {
        let task = tokio::spawn(async { panic!("boom") });
        let err = StageHandle::task("boomer", StopSignal::new(), task)
            .join()
            .await
            .unwrap_err();
        assert_eq!(err.stage, "boomer");
    }
}
