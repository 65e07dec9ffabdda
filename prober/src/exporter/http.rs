//! The exporter's HTTP side (axum): `/metrics` in the format the scraper asks for, `/probe`
//! in blackbox_exporter's manner, and a page at `/` for a person.
use std::{collections::HashMap, fmt::Write as _, net::IpAddr, sync::Arc, time::Duration};

use anyhow::{Context as _, Result};
use axum::{
    extract::{Query, State as Shared},
    http::{header, HeaderMap, StatusCode},
    response::{Html, IntoResponse, Response},
    routing::get,
    Router,
};
use prometheus_client::{
    encoding::{prometheus_protobuf, prometheus_text, text, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::net::TcpListener;

use super::{
    config::{self, Probe},
    engine::{OnDemand, OnDemandResult},
    metrics::{FloatGauge, Metrics, RESULTS},
    supervisor, State,
};

const PROTOBUF: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// `/probe`'s probes at most.
const MAX_COUNT: u32 = 100;

/// Binds `listen`: `HOST:PORT`, or `:PORT` for every address (IPv6 and IPv4, or IPv4 alone
/// where the host has no IPv6).
pub async fn bind(listen: &str) -> Result<TcpListener> {
    let bad = || format!("bad listen address '{listen}': HOST:PORT or :PORT");
    if let Some(port) = listen.strip_prefix(':') {
        let port: u16 = port.parse().with_context(bad)?;
        return match TcpListener::bind(("::", port)).await {
            Ok(listener) => Ok(listener),
            Err(_) => TcpListener::bind(("0.0.0.0", port))
                .await
                .with_context(|| format!("listening on {listen}")),
        };
    }
    let address: std::net::SocketAddr = listen.parse().with_context(bad)?;
    TcpListener::bind(address)
        .await
        .with_context(|| format!("listening on {listen}"))
}

pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    stopped: tokio::sync::oneshot::Receiver<()>,
) -> Result<()> {
    let router = Router::new()
        .route("/", get(page))
        .route("/metrics", get(metrics))
        .route("/probe", get(probe))
        .with_state(state);
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = stopped.await;
        })
        .await
        .context("serving HTTP")
}

/// The registry in the format `Accept` asks for: Prometheus's protobuf (which carries native
/// histograms) when named, else OpenMetrics when named, else Prometheus's text format.
fn exposition(registry: &Registry, headers: &HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let encoded = if accept.contains("proto=io.prometheus.client.MetricFamily") {
        prometheus_protobuf::encode_to_vec(registry)
            .map(|bytes| (PROTOBUF, bytes))
            .map_err(|error| error.to_string())
    } else {
        let mut body = String::new();
        let (content_type, written) = if accept.contains("application/openmetrics-text") {
            (OPENMETRICS, text::encode(&mut body, registry))
        } else {
            (
                PROMETHEUS_TEXT,
                prometheus_text::encode(&mut body, registry),
            )
        };
        written
            .map(|()| (content_type, body.into_bytes()))
            .map_err(|error| error.to_string())
    };
    match encoded {
        Ok((content_type, body)) => ([(header::CONTENT_TYPE, content_type)], body).into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding the metrics: {error}\n"),
        )
            .into_response(),
    }
}

async fn metrics(Shared(state): Shared<Arc<State>>, headers: HeaderMap) -> Response {
    exposition(&state.metrics.registry, &headers)
}

/// `/probe?target=…&probe=tcp-syn|icmp&port=…&count=…&timeout=…`: probes now, through the
/// engine of the target's route, and answers with that request's results alone.
async fn probe(
    Shared(state): Shared<Arc<State>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let request = match ProbeRequest::parse(&query) {
        Ok(request) => request,
        Err(error) => return bad_request(&error),
    };
    let started = tokio::time::Instant::now();
    let target = request.target.clone();
    // getaddrinfo blocks: off the runtime's one thread.
    let resolved = tokio::task::spawn_blocking(move || supervisor::address(&target)).await;
    let ip = match resolved {
        Ok(Ok(ip)) => ip,
        Ok(Err(error)) => return bad_request(&error),
        Err(error) => return bad_request(&anyhow::anyhow!("resolving: {error}")),
    };
    let (answer, answered) = tokio::sync::oneshot::channel();
    let on_demand = OnDemand {
        ip,
        port: request.port.unwrap_or(0),
        count: request.count,
        timeout: request.timeout,
        answer,
    };
    let queued = state
        .supervisor
        .lock()
        .expect("supervisor")
        .probe_once(request.probe, on_demand);
    if let Err(error) = queued {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}\n", one_line(&error)),
        )
            .into_response();
    }
    let bound = request.timeout + ON_DEMAND_MARGIN * (request.count + 1);
    // No answer means the engine went away meanwhile: what it sent is unknown, not none.
    let Ok(Ok(result)) = tokio::time::timeout(bound, answered).await else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the engine stopped before the probes were settled\n",
        )
            .into_response();
    };
    let registry = probe_registry(&result, ip, started.elapsed());
    exposition(&registry, &headers)
}

/// What an on-demand request's answer may take beyond its probes' timeout.
const ON_DEMAND_MARGIN: Duration = Duration::from_millis(50);

struct ProbeRequest {
    target: String,
    probe: Probe,
    port: Option<u16>,
    count: u32,
    timeout: Duration,
}

impl ProbeRequest {
    fn parse(query: &HashMap<String, String>) -> Result<ProbeRequest> {
        let target = query
            .get("target")
            .context("no target: /probe?target=HOST")?
            .clone();
        let probe = Probe::parse(query.get("probe").map_or("icmp", String::as_str))?;
        let port = query
            .get("port")
            .map(|port| port.parse::<u16>().context("bad port"))
            .transpose()?;
        let port = probe.checked_port(port)?;
        let count = match query.get("count") {
            Some(count) => count.parse().context("bad count")?,
            None => 1,
        };
        if count == 0 || count > MAX_COUNT {
            anyhow::bail!("count must be 1 to {MAX_COUNT}");
        }
        let timeout = match query.get("timeout") {
            Some(timeout) => config::parse_duration(timeout)?,
            None => Duration::from_secs(1),
        };
        if timeout.is_zero() || timeout > Duration::from_secs(10) {
            anyhow::bail!("timeout must be above 0 and at most 10s");
        }
        Ok(ProbeRequest {
            target,
            probe,
            port,
            count,
            timeout,
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SequenceLabels {
    seq: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AddressLabels {
    ip: String,
}

/// blackbox_exporter's series for one request, and prober's own.
fn probe_registry(result: &OnDemandResult, ip: IpAddr, took: Duration) -> Registry {
    let mut registry = Registry::default();
    let success: Gauge = Gauge::default();
    success.set(i64::from(!result.replies.is_empty()));
    registry.register("probe_success", "Whether a reply came", success);
    let duration: FloatGauge = FloatGauge::default();
    duration.set(took.as_secs_f64());
    registry.register(
        "probe_duration_seconds",
        "How long the request took",
        duration,
    );
    let sent: Counter = Counter::default();
    sent.inc_by(u64::from(result.sent));
    registry.register("probe_sent", "Probes sent", sent);
    let replies: Counter = Counter::default();
    replies.inc_by(result.replies.len() as u64);
    registry.register("probe_replies", "First replies", replies);
    let rtts: Family<SequenceLabels, FloatGauge> = Family::default();
    for &(seq, rtt, result) in &result.replies {
        rtts.get_or_create(&SequenceLabels {
            seq: seq.to_string(),
            result,
        })
        .set(rtt);
    }
    registry.register("probe_rtt_seconds", "Each reply's round trip", rtts);
    let address: Family<AddressLabels, Gauge> = Family::default();
    address
        .get_or_create(&AddressLabels { ip: ip.to_string() })
        .set(1);
    registry.register("probe_ip_addr", "The address probed", address);
    registry
}

fn bad_request(error: &anyhow::Error) -> Response {
    (StatusCode::BAD_REQUEST, format!("{}\n", one_line(error))).into_response()
}

fn one_line(error: &anyhow::Error) -> String {
    format!("{error:#}").replace('\n', " ")
}

/// One row per target: what was sent, what came back, the last round trip.
async fn page(Shared(state): Shared<Arc<State>>) -> Html<String> {
    let listed = state.supervisor.lock().expect("supervisor").listed();
    let metrics = &state.metrics;
    let mut rows = String::new();
    for labels in &listed {
        let count = |family: &Family<_, Counter>| family.get(labels).map_or(0, |c| c.get());
        let sent = count(&metrics.sent);
        let timeouts = count(&metrics.timeouts);
        let replies: u64 = RESULTS
            .iter()
            .filter_map(|result| {
                let series = Metrics::reply_labels(labels, result);
                metrics.replies.get(&series).map(|c| c.get())
            })
            .sum();
        // Of the probes settled: the one awaiting its timeout is neither lost nor answered.
        let loss = match timeouts + replies {
            0 => "-".to_owned(),
            settled => format!("{:.1} %", 100.0 * timeouts as f64 / settled as f64),
        };
        let last = metrics
            .last_rtt
            .get(labels)
            .map_or("-".to_owned(), |gauge| {
                format!("{:.3} ms", gauge.get() * 1e3)
            });
        let _ = writeln!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{sent}</td><td>{replies}</td><td>{loss}</td><td>{last}</td></tr>",
            escape(&labels.host),
            escape(&labels.ip),
            labels.probe,
            labels.port,
        );
    }
    Html(format!(
        "<!DOCTYPE html>\n<html><head><title>prober exporter</title></head><body>\n\
         <h1>prober exporter</h1>\n<p><a href=\"/metrics\">/metrics</a></p>\n\
         <table border=\"1\"><tr><th>host</th><th>ip</th><th>probe</th><th>port</th><th>sent</th>\
         <th>replies</th><th>loss</th><th>last RTT</th></tr>\n{rows}</table>\n</body></html>\n"
    ))
}

/// Text for HTML: a host name comes from the configuration, not from us.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
