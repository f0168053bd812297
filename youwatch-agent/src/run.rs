//! The agent's main job: start the stages, connect them with bounded channels, run until
//! SIGINT/SIGTERM, then detach cleanly.

use std::{io::Write, path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::Context;
use prometheus_client::registry::Registry;

use crate::{
    cgroupfs,
    cli::RunArgs,
    config::Config,
    inventory, rules,
    sensor::{ebpf::ExecSensor, falco::FalcoMetrics},
    telemetry::{alert, http},
};

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

    // Rules, alert output and the Falco webhook before the kernel: rule errors fail fast.
    let hostname = config.node_name();
    let mut registry = Registry::default();
    let rules_metrics = rules::RulesMetrics::default();
    rules_metrics.register(&mut registry);
    let engine = config
        .rules
        .engine(hostname.clone(), rules_metrics)
        .context("loading the rules")?;
    let alert_metrics = alert::AlertMetrics::default();
    alert_metrics.register(&mut registry);
    let (detections, alert_writer) =
        alert::start(&config.telemetry.alerts, hostname, alert_metrics)?;
    let listen = config.telemetry.listen_addr().map_err(anyhow::Error::msg)?;
    let falco_metrics = FalcoMetrics::default();
    falco_metrics.register(&mut registry);
    let falco =
        config
            .falco
            .webhook_router(listen.is_some(), detections.clone(), falco_metrics.clone())?;
    let falco_file = config
        .falco
        .file_input(&config.agent.state_dir, falco_metrics);
    if let Some(input) = &falco_file {
        input.register(&mut registry);
    }
    let waf = crate::waf::WafStage::new(&config.waf, &config.agent.state_dir)?;
    if let Some(waf) = &waf {
        waf.register(&mut registry);
    }

    let mut sensor = ExecSensor::load(&config.sensor).context("starting the eBPF exec sensor")?;
    sensor.metrics().register(&mut registry);
    let inventory_metrics = inventory::InventoryMetrics::default();
    inventory_metrics.register(&mut registry);
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = match listen {
        Some(addr) => {
            let app = http::router(Arc::new(registry), falco.unwrap_or_default());
            let shutdown = async {
                let _ = http_stopped.await;
            };
            Some(tokio::spawn(http::serve(
                http::bind(addr).await?,
                app,
                shutdown,
            )))
        }
        None => None,
    };
    let watch = sensor.watch_set();
    let events = sensor.events(config.sensor.channel_capacity)?;
    let mut sensor = Some(sensor);
    if args.dry_run {
        tracing::info!("dry-run: reporting only, no action is taken");
    }
    let (waf_tx, mut waf_detections) = tokio::sync::mpsc::channel(1024);
    if let Some(waf) = waf {
        waf.spawn(waf_tx)?;
    }
    let falco_file = falco_file
        .map(|input| input.spawn(detections.clone()))
        .transpose()?;
    // The inventory sits between the sensor and the rules: it keeps the watched cgroups in
    // step with the guarded workloads and enriches each exec.
    let mut enriched = inventory::start(
        &config.inventory,
        config.node_name(),
        watch,
        explicit,
        events,
        inventory_metrics,
    )
    .await?;

    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            exec = enriched.recv() => {
                // Closes after the detach below, once the ring is drained and enriched.
                let Some(exec) = exec else { break };
                if args.dry_run {
                    print_json_line(&exec)?;
                }
                for detection in engine.evaluate(&exec) {
                    let _ = detections.send(detection);
                }
            }
            Some(detection) = waf_detections.recv() => {
                let _ = detections.send(detection);
            }
            signal = &mut shutdown, if sensor.is_some() => {
                if let Some(sensor) = sensor.take() {
                    tracing::info!(signal, counters = ?sensor.counters().ok(), "shutting down: detaching the exec sensor");
                    sensor.detach();
                }
            }
        }
    }
    tracing::info!("exec sensor detached, every stored event reported");
    let _ = stop_http.send(());
    if let Some(server) = server {
        server.await??;
    }
    if let Some(input) = falco_file {
        tokio::task::spawn_blocking(move || input.stop()).await?;
    }
    // The writer ends once every sender is gone, after writing what is queued.
    drop(detections);
    tokio::task::spawn_blocking(move || alert_writer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the alert writer thread panicked"))?;
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
