//! The agent's main job: start the stages, connect them with bounded channels, run until
//! SIGINT/SIGTERM, then detach cleanly.

use std::{io::Write, path::PathBuf, process::ExitCode};

use anyhow::Context;

use crate::{cgroupfs, cli::RunArgs, config::Config, inventory, sensor::ebpf::ExecSensor};

pub fn main(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(args.config.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(config, args))
}

async fn run(config: Config, args: RunArgs) -> anyhow::Result<ExitCode> {
    // Resolve every cgroup before touching the kernel, so a typo fails fast and by name.
    let explicit: Vec<(PathBuf, u64)> = args
        .watch_cgroup
        .iter()
        .map(|path| cgroupfs::cgroup_id(path).map(|id| (path.clone(), id)))
        .collect::<Result<_, _>>()?;

    let mut sensor = ExecSensor::load(&config.sensor).context("starting the eBPF exec sensor")?;
    let watch = sensor.watch_set();
    let events = sensor.events(config.sensor.channel_capacity)?;
    let mut sensor = Some(sensor);
    if args.dry_run {
        tracing::info!("dry-run: reporting only, no action is taken");
    }
    let (detection_tx, mut detections) = tokio::sync::mpsc::channel(1024);
    if let Some(waf) = crate::waf::WafStage::new(&config.waf, &config.agent.state_dir)? {
        waf.spawn(detection_tx)?;
    }
    // The inventory sits between the sensor and the rules: it keeps the watched cgroups in
    // step with the guarded workloads and enriches each exec.
    let mut enriched = inventory::start(
        &config.inventory,
        config.node_name(),
        watch,
        explicit,
        events,
        inventory::InventoryMetrics::default(),
    )
    .await?;

    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            exec = enriched.recv() => {
                // Closes after the detach below, once the ring is drained and enriched.
                let Some(exec) = exec else { break };
                print_json_line(&exec)?;
            }
            Some(detection) = detections.recv() => print_json_line(&detection)?,
            signal = &mut shutdown, if sensor.is_some() => {
                if let Some(sensor) = sensor.take() {
                    tracing::info!(signal, counters = ?sensor.counters().ok(), "shutting down: detaching the exec sensor");
                    sensor.detach();
                }
            }
        }
    }
    tracing::info!("exec sensor detached, every stored event reported");
    Ok(ExitCode::SUCCESS)
}

/// One JSON object per line on stdout, flushed (dry-run output is read by people and pipes).
fn print_json_line(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, value)?;
    stdout.write_all(b"\n")?;
    stdout.flush()?;
    Ok(())
}

/// Resolves on the first SIGINT or SIGTERM, with the signal's name.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the agent with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
