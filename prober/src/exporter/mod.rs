//! `prober exporter`: kernel-timed TCP SYN and ICMP round trips, around the clock, for
//! Prometheus to scrape.
//!
//! [`config`] reads what is probed; [`supervisor`] resolves and routes the targets and keeps one
//! [`engine`] running per interface, source address and probe kind (rebuilding one whose
//! interface was removed, following names that move); [`http`] serves `/metrics`, `/probe`
//! and `/`; [`metrics`] holds the series. The engines run on threads of their own, the rest on
//! one tokio thread.
pub mod config;
mod engine;
mod http;
pub mod metrics;
mod supervisor;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context as _, Result};
use tokio::signal::unix::{signal, SignalKind};

use config::CommandLine;
use metrics::{Metrics, ResultLabel};
use supervisor::Supervisor;

/// How often engines that ended are rebuilt, unrouted targets routed again, and names due
/// for a lookup looked up.
const MAINTAIN_EVERY: Duration = Duration::from_secs(1);

/// One line on stderr per event.
pub(crate) fn log(message: std::fmt::Arguments) {
    eprintln!("prober exporter: {message}");
}

/// What the HTTP handlers share with the signal loop.
pub(crate) struct State {
    pub metrics: Arc<Metrics>,
    pub supervisor: Mutex<Supervisor>,
}

/// Runs until SIGINT or SIGTERM; everything is detached when it returns.
pub fn run(command_line: CommandLine) -> Result<()> {
    let config = command_line.load()?;
    let metrics = Arc::new(Metrics::new(&config.rtt_buckets));
    let listen = config.listen.clone();
    let supervisor = Supervisor::start(config, command_line.xdp_mode, metrics.clone())?;
    let state = Arc::new(State {
        metrics,
        supervisor: Mutex::new(supervisor),
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(serve(&command_line, &listen, state.clone()));
    // The engines stop (and detach) before the process ends, however the loop ended.
    state.supervisor.lock().expect("supervisor").stop();
    result
}

async fn serve(command_line: &CommandLine, listen: &str, state: Arc<State>) -> Result<()> {
    let listener = http::bind(listen).await?;
    log(format_args!(
        "listening on http://{}",
        listener
            .local_addr()
            .context("reading the listening address")?
    ));
    let mut hangup = signal(SignalKind::hangup()).context("catching SIGHUP")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("catching SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("catching SIGTERM")?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http::serve(listener, state.clone(), stopped));
    let mut ticks = tokio::time::interval(MAINTAIN_EVERY);
    loop {
        tokio::select! {
            _ = hangup.recv() => reload(command_line, &state),
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            _ = ticks.tick() => state.supervisor.lock().expect("supervisor").maintain(),
        }
    }
    log(format_args!("stopping"));
    let _ = stop.send(());
    server.await.context("the HTTP server")??;
    Ok(())
}

/// Reads the configuration again: taken whole, or refused whole with the old one kept.
fn reload(command_line: &CommandLine, state: &State) {
    let loaded = command_line.load();
    let mut supervisor = state.supervisor.lock().expect("supervisor");
    let outcome = loaded.and_then(|config| supervisor.reconfigure(config));
    let result = match &outcome {
        Ok(targets) => {
            log(format_args!("configuration reloaded: {targets} targets"));
            "success"
        }
        Err(error) => {
            log(format_args!(
                "configuration refused, the previous one is kept: {error:#}"
            ));
            "failure"
        }
    };
    state
        .metrics
        .reloads
        .get_or_create(&ResultLabel { result })
        .inc();
    state
        .metrics
        .last_reload_successful
        .set(i64::from(outcome.is_ok()));
}
