//! The kernel programs' diagnostics (aya-log records, `sensor.kernel_log`) as `tracing`
//! events with target `youwatch_agent::kernel`, read by a task on the runtime.

use aya::Ebpf;
use aya_log::EbpfLogger;
use tokio::io::unix::AsyncFd;

use crate::sensor::KernelLog;

/// Hands each kernel record to `tracing`, at its own level.
struct ToTracing;

impl log::Log for ToTracing {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        // Formatted straight into the event: nothing allocated for a record.
        let message = record.args();
        match record.level() {
            log::Level::Error => tracing::error!(target: "youwatch_agent::kernel", "{message}"),
            log::Level::Warn => tracing::warn!(target: "youwatch_agent::kernel", "{message}"),
            log::Level::Info => tracing::info!(target: "youwatch_agent::kernel", "{message}"),
            log::Level::Debug => tracing::debug!(target: "youwatch_agent::kernel", "{message}"),
            log::Level::Trace => tracing::trace!(target: "youwatch_agent::kernel", "{message}"),
        }
    }

    fn flush(&self) {}
}

/// The kernel's log ring, until the reader task takes it.
pub struct KernelLogReader(EbpfLogger<ToTracing>);

impl KernelLogReader {
    /// Takes the log ring from the loaded object, unless `level` is off.
    pub fn take(ebpf: &mut Ebpf, level: KernelLog) -> Result<Option<Self>, aya_log::Error> {
        if level == KernelLog::Off {
            return Ok(None);
        }
        EbpfLogger::init_with_logger(ebpf, ToTracing).map(|l| Some(Self(l)))
    }

    /// Logs every record as it arrives, on the current runtime, until the runtime stops.
    pub fn spawn(self) -> std::io::Result<()> {
        // SAFETY: the logger keeps its ring's fd open, and the same, for as long as it lives.
        let mut ring =
            unsafe { AsyncFd::register_with_interest(self.0, tokio::io::Interest::READABLE) }?;
        tokio::spawn(async move {
            loop {
                let Ok(mut ready) = ring.readable_mut().await else {
                    return;
                };
                ready.get_inner_mut().flush();
                ready.clear_ready();
            }
        });
        Ok(())
    }
}
