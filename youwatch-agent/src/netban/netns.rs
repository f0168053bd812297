//! A thread that lives in a network namespace and runs jobs there. Interfaces, routes,
//! addresses and netlink (clsact filters) are per namespace and per thread: the node ban's
//! program is attached and detached on this thread, which owns it, so a `node_ban.netns` agent
//! (or a test) reaches the host's (or a test namespace's) interfaces from anywhere.

use std::{
    fs::File,
    io,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    sync::mpsc,
    thread::JoinHandle,
};

type Job<S> = Box<dyn FnOnce(&mut S) + Send>;

/// Owns `S` on a thread in a network namespace; dropping it drops `S` there.
pub struct NetnsWorker<S> {
    jobs: Option<mpsc::Sender<Job<S>>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error(
        "node_ban.netns {path}: {source} (entering another network namespace needs CAP_SYS_ADMIN; \
         or run the agent with hostNetwork: true and leave node_ban.netns empty)"
    )]
    Enter { path: PathBuf, source: io::Error },
    #[error("the node ban's network-namespace thread is gone")]
    Gone,
}

impl<S: Send + 'static> NetnsWorker<S> {
    /// Starts the thread in `netns` (a path such as `/proc/1/ns/net` or `/run/netns/NAME`;
    /// `None`: the agent's own namespace) and hands it `state`.
    pub fn spawn(netns: Option<&Path>, state: S) -> Result<NetnsWorker<S>, NetnsError> {
        let target = netns.map(Path::to_owned);
        let (ready_tx, ready) = mpsc::sync_channel(1);
        let (jobs, inbox) = mpsc::channel::<Job<S>>();
        let thread = std::thread::Builder::new()
            .name("netban-netns".into())
            .spawn(move || {
                let entered = match &target {
                    Some(path) => enter(path).map_err(|source| NetnsError::Enter {
                        path: path.clone(),
                        source,
                    }),
                    None => Ok(()),
                };
                let ok = entered.is_ok();
                let _ = ready_tx.send(entered);
                if !ok {
                    return;
                }
                let mut state = state;
                while let Ok(job) = inbox.recv() {
                    job(&mut state);
                }
            })
            .map_err(|_| NetnsError::Gone)?;
        ready.recv().map_err(|_| NetnsError::Gone)??;
        Ok(NetnsWorker {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Runs `job` on the thread, in its namespace, and waits for its result.
    pub fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut S) -> T + Send + 'static,
    ) -> Result<T, NetnsError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let jobs = self.jobs.as_ref().ok_or(NetnsError::Gone)?;
        jobs.send(Box::new(move |state| {
            let _ = tx.send(job(state));
        }))
        .map_err(|_| NetnsError::Gone)?;
        rx.recv().map_err(|_| NetnsError::Gone)
    }
}

impl<S> Drop for NetnsWorker<S> {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Moves the calling thread into the network namespace at `path`.
fn enter(path: &Path) -> io::Result<()> {
    let file = File::open(path)?;
    // SAFETY: setns with a namespace descriptor we own, for this thread only.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
