//! The agent's main job: build every stage, connect them through the detection bus, run until
//! SIGINT/SIGTERM, then stop them in order: producers first (the exec sensor detaches after
//! draining the kernel's ring, the tailed inputs finish their batch and save their cursor,
//! the HTTP listener finishes its requests), then the bus drains into its listeners (the
//! response stage, the alert writer), which end last.

use std::{io::Write, path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::Context;
use clap::Args;
use prometheus_client::registry::Registry;

use crate::{
    bus::{BusBuilder, BusMetrics, Delivery},
    cgroupfs,
    cli::ConfigArg,
    cluster,
    config::Config,
    correlate::Correlation,
    enforce,
    inputs::falco::FalcoMetrics,
    inventory,
    netban::NodeBanStage,
    response::{DryRun, ResponseStage},
    rules,
    sensor::ebpf::ExecSensor,
    stage::StageHandle,
    telemetry::{alert, health::Readiness, http},
};

/// The name of the async runtime's threads.
pub const WORKER_THREAD: &str = "yw-worker";

/// Decisions the response stage may hold before producers wait (each is small).
const RESPONSE_QUEUE: usize = 4096;

/// `youwatch-agent run` (and no subcommand): how this run differs from the configuration.
#[derive(Clone, Debug, Default, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Detect and report, but change nothing: no pod is deleted, no Ingress patched. Each exec
    /// and each planned request (with its reason) is printed on stdout as one JSON line.
    /// `--dry-run=server` sends every request with dryRun=All instead, so the API server
    /// validates it (RBAC, preconditions, admission) and persists nothing.
    #[arg(
        long,
        value_name = "MODE",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "client"
    )]
    pub dry_run: Option<crate::response::DryRun>,
    /// Watch this cgroup v2 directory and everything below it, in addition to the pods the
    /// inventory selects. Repeatable. Example: /sys/fs/cgroup/unified/system.slice/docker-<id>.scope
    // The doc comment is the --help text, shown as written: `<id>` is not HTML there.
    #[allow(rustdoc::invalid_html_tags)]
    #[arg(long, value_name = "PATH")]
    pub watch_cgroup: Vec<PathBuf>,
    /// Stop forbidden execs (enforce.forbidden: shells by default) in the kernel, before they
    /// run an instruction: in every --watch-cgroup subtree and in the guarded pods that opt in
    /// (label youwatch.dev/enforce: "true"). Sets enforce.mode to enforce; with --dry-run,
    /// to monitor (report what would have been stopped). Example on a dev VM:
    /// youwatch-agent --enforce --watch-cgroup /sys/fs/cgroup/unified/demo
    #[arg(long)]
    pub enforce: bool,
}

pub fn main(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = args.config.load()?;
    // The exec ring is read by a task on these workers: they run at sensor.reader_nice.
    let nice = config.sensor.reader_nice;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(WORKER_THREAD)
        .on_thread_start(move || crate::sensor::ebpf::set_thread_nice(nice))
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(config, args))
}

async fn run(config: Config, args: RunArgs) -> anyhow::Result<ExitCode> {
    // Installed first: a SIGTERM during start-up (the kubelet stopping a pod that is still
    // parsing BTF) waits for the main loop, which then shuts down in order, instead of killing
    // the process with programs half attached.
    let shutdown = shutdown_signal();
    let dry_run = args.dry_run.unwrap_or(DryRun::Off);
    // Resolve every cgroup before touching the kernel, so a typo fails fast and by name.
    let explicit: Vec<(PathBuf, u64)> = args
        .watch_cgroup
        .iter()
        .map(|path| cgroupfs::cgroup_id(path).map(|id| (path.clone(), id)))
        .collect::<Result<_, _>>()?;

    // Build: every configuration error surfaces here, before the kernel is touched.
    config.enforce.validate().map_err(anyhow::Error::msg)?;
    let enforce_mode = config.enforce.mode.effective(
        args.enforce,
        dry_run != DryRun::Off || config.response.dry_run,
    );
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
    let alert_writer = alert::writer(&config.telemetry.alerts, hostname.clone(), alert_metrics)?;
    let cluster = cluster::connect(config.inventory.mode, hostname.clone()).await?;
    let response = ResponseStage::new(
        &config.response,
        cluster.clone(),
        dry_run,
        &config.agent.state_dir,
    )?;
    response.register(&mut registry);
    // Web requests before a runtime detection: the WAF offers, the response correlates.
    let (response, suspicions) = match Correlation::new(&config.correlation, &config.waf.scoring)? {
        Some((correlation, sink)) => {
            correlation.register(&mut registry);
            (response.with_correlation(correlation), Some(sink))
        }
        None => (response, None),
    };
    // The node ban attaches now: a wrong interface or a missing bpffs fails the start, by name.
    let node_ban = NodeBanStage::new(
        &config.node_ban,
        &config.response.allowlist,
        &config.response.retry,
        cluster.clone(),
        dry_run,
    )
    .context("starting the node ban")?;
    if let Some(node_ban) = &node_ban {
        node_ban.register(&mut registry);
    }

    // The bus: the response stage never loses a decision; the alert writer may (counted).
    let bus_metrics = BusMetrics::default();
    bus_metrics.register(&mut registry);
    let mut bus = BusBuilder::new(bus_metrics);
    let response_listener = bus.listen("response", RESPONSE_QUEUE, Delivery::Lossless);
    let alert_listener = bus.listen(
        "alerts",
        config.telemetry.alerts.queue,
        Delivery::BestEffort,
    );
    let bus = bus.build();

    let listen = config.telemetry.listen_addr().map_err(anyhow::Error::msg)?;
    let falco_metrics = FalcoMetrics::default();
    falco_metrics.register(&mut registry);
    let falco_webhook =
        config
            .falco
            .webhook_router(listen.is_some(), bus.clone(), falco_metrics.clone())?;
    let falco_file = config
        .falco
        .file_input(&config.agent.state_dir, falco_metrics);
    if let Some(input) = &falco_file {
        input.register(&mut registry);
    }
    let waf = crate::waf::WafStage::new(&config.waf, &config.agent.state_dir)?.map(|waf| {
        match (&suspicions, &cluster) {
            (Some(sink), Some(_)) => waf.with_suspicions(sink.clone()),
            _ => waf,
        }
    });
    if let Some(waf) = &waf {
        waf.register(&mut registry);
    }
    let mut sensor = ExecSensor::load(&config.sensor).context("starting the eBPF exec sensor")?;
    sensor.metrics().register(&mut registry);
    let mut enforcement =
        enforce::arm(&config.enforce, enforce_mode, &mut sensor, hostname.clone())
            .context("arming in-kernel enforcement")?;
    enforcement.metrics.register(&mut registry);
    let enforced = (enforce_mode != enforce::EnforceMode::Off)
        .then(|| {
            let own_pod = cluster
                .as_deref()
                .and_then(|c| Some((c.own_namespace.clone()?, c.own_pod.clone()?)));
            inventory::EnforceSelection::new(&config.enforce, args.enforce, own_pod)
        })
        .transpose()
        .map_err(|e| anyhow::anyhow!("enforce.pod_selector: {e}"))?;
    let inventory_metrics = inventory::InventoryMetrics::default();
    inventory_metrics.register(&mut registry);

    // /readyz: the sensor's program attached and read, the inventory synced, the bus flowing.
    let readiness = Readiness::default();
    let sensor_ready = readiness.flag("sensor", "the exec sensor is starting");
    let synced = inventory_metrics.synced.clone();
    readiness.probe("inventory", move || match synced.get() {
        0 => Err("waiting for this node's pods (or containers) to be listed".into()),
        _ => Ok(()),
    });
    readiness.probe("bus", bus.flowing_probe());
    let status = enforcement.status.clone();
    readiness.detail("enforce", move || status.describe());

    // Spawn: listeners first, so producers never publish into nothing.
    let listeners = [
        response.spawn(response_listener, bus.reports_only()),
        alert_writer.spawn(alert_listener)?,
    ];
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = match listen {
        Some(addr) => {
            let routes = falco_webhook
                .unwrap_or_default()
                .merge(http::readyz(readiness.clone()));
            let app = http::router(Arc::new(registry), routes);
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
    if dry_run != DryRun::Off {
        tracing::info!(%dry_run, "dry-run: reporting only, nothing is changed in the cluster");
    }
    let node_ban = node_ban.map(NodeBanStage::spawn);
    let mut inputs: Vec<StageHandle> = Vec::new();
    if let Some(waf) = waf {
        inputs.push(waf.spawn(bus.clone())?);
    }
    if let Some(input) = falco_file {
        inputs.push(input.spawn(bus.clone())?);
    }
    let watch = sensor.watch_set();
    let events = sensor.events_with_tap(config.sensor.channel_capacity, enforcement.tap.take())?;
    sensor_ready.ready();
    let mut sensor = Some(sensor);
    // The inventory sits between the sensor and the rules: it keeps the watched cgroups in
    // step with the guarded workloads and enriches each exec.
    let (mut enriched, _inventory) = inventory::start(
        &config.inventory,
        cluster.as_deref(),
        watch,
        explicit,
        enforced,
        events,
        inventory_metrics,
    )?;
    release_freed_heap();

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            exec = enriched.recv() => {
                // Closes after the detach below, once the ring is drained and enriched.
                let Some(exec) = exec else { break };
                if dry_run != DryRun::Off {
                    print_json_line(&exec)?;
                }
                for detection in enforcement.detections(&exec) {
                    bus.publish(detection).await?;
                }
                for detection in engine.evaluate(&exec) {
                    bus.publish(detection).await?;
                }
            }
            signal = &mut shutdown, if sensor.is_some() => {
                if let Some(sensor) = sensor.take() {
                    sensor_ready.not_ready("shutting down");
                    tracing::info!(signal, counters = ?sensor.counters().ok(), "shutting down: detaching the exec sensor");
                    sensor.detach();
                }
                for input in &inputs {
                    input.stop();
                }
            }
        }
    }
    tracing::info!("exec sensor detached, every stored event reported");

    // Producers: each finishes what it has in hand.
    for input in inputs {
        input.join().await?;
    }
    let _ = stop_http.send(());
    if let Some(server) = server {
        server.await??;
    }
    // Listeners end once the last producer's bus handle is gone and their queues are drained.
    drop(bus);
    for listener in listeners {
        listener.join().await?;
    }
    // Last: bans stay in force until the agent has finished everything else.
    if let Some(node_ban) = node_ban {
        node_ban.stop();
        node_ban.join().await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Start-up (parsing the kernel's BTF, compiling rules) leaves tens of MB freed in the heap
/// that glibc keeps; give it back once, so the steady footprint is what the agent uses.
fn release_freed_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// One JSON object per line on stdout, flushed (dry-run output is read by people and pipes).
pub fn print_json_line(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, value)?;
    stdout.write_all(b"\n")?;
    stdout.flush()?;
    Ok(())
}

/// Installs the SIGINT and SIGTERM handlers now; the future resolves on the first of them,
/// with the signal's name.
fn shutdown_signal() -> impl std::future::Future<Output = &'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    async move {
        let (Ok(mut int), Ok(mut term)) = handlers else {
            tracing::error!("cannot install signal handlers; stop the agent with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        }
    }
}
