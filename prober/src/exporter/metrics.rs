//! What the exporter exposes, as `prometheus-client` families: per target (labels `host`, `ip`,
//! `probe`, `port`, `source`), per engine (its XDP program's counters) and for the process. The
//! families are shared handles: engines update them, `/metrics` encodes them.
use std::sync::{atomic::AtomicU64, Arc};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::{Family, MetricConstructor},
        gauge::Gauge,
        histogram::{Histogram, NativeHistogramConfig},
    },
    registry::Registry,
};

/// One target's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct TargetLabels {
    pub host: String,
    pub ip: String,
    pub probe: String,
    /// Empty for ICMP.
    pub port: String,
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplyLabels {
    pub host: String,
    pub ip: String,
    pub probe: String,
    pub port: String,
    pub source: String,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct XdpLabels {
    pub interface: String,
    pub probe: String,
    pub event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HostLabel {
    pub host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// What a reply says, as `prober_replies_total`'s `result`: a SYN-ACK `open`, a RST `closed`,
/// an echo reply `echo`; an ICMP error about the probe `unreachable` (its round trip is the
/// router's, not the target's, so no RTT of it is observed).
pub const RESULTS: [&str; 4] = ["open", "closed", "echo", "unreachable"];

/// The results a probe's replies can have.
fn results_of(probe: &str) -> &'static [&'static str] {
    match probe {
        "icmp" => &["echo", "unreachable"],
        _ => &["open", "closed", "unreachable"],
    }
}

/// Histograms with the configured classic buckets and a native (exponential) histogram of the
/// finest schema: 2^(1/256), 0.27 % wide, a few µs at a millisecond.
#[derive(Clone, Debug)]
pub struct RttHistogram {
    buckets: Arc<[f64]>,
}

/// The finest schema Prometheus knows.
const NATIVE_SCHEMA: i8 = 8;

impl MetricConstructor<Histogram> for RttHistogram {
    fn new_metric(&self) -> Histogram {
        Histogram::new_classic_and_native(
            self.buckets.iter().copied(),
            NativeHistogramConfig::with_schema(NATIVE_SCHEMA),
        )
    }
}

pub type Rtts = Family<TargetLabels, Histogram, RttHistogram>;

/// One target's series, as handles into the families (each shares its value with its family's).
pub struct Series {
    pub sent: Counter,
    pub timeouts: Counter,
    pub duplicates: Counter,
    pub send_errors: Counter,
    pub rtt: Histogram,
    /// `prober_replies_total` by each result the target's probe can have.
    pub replies: Vec<(&'static str, Counter)>,
    /// The last reply's round trip and TTL, from its first reply on.
    pub last: Option<(FloatGauge, Gauge)>,
}

impl Series {
    pub fn replies(&self, result: &str) -> Option<&Counter> {
        self.replies
            .iter()
            .find(|(name, _)| *name == result)
            .map(|(_, counter)| counter)
    }
}
pub type FloatGauge = Gauge<f64, AtomicU64>;

/// Every family, registered.
pub struct Metrics {
    pub registry: Registry,
    pub sent: Family<TargetLabels, Counter>,
    pub replies: Family<ReplyLabels, Counter>,
    pub timeouts: Family<TargetLabels, Counter>,
    pub duplicates: Family<TargetLabels, Counter>,
    pub send_errors: Family<TargetLabels, Counter>,
    pub rtt: Rtts,
    pub last_rtt: Family<TargetLabels, FloatGauge>,
    pub ttl: Family<TargetLabels, Gauge>,
    pub xdp: Family<XdpLabels, Counter>,
    pub reloads: Family<ResultLabel, Counter>,
    pub last_reload_successful: Gauge,
    pub resolve_errors: Family<HostLabel, Counter>,
}

impl Metrics {
    pub fn new(rtt_buckets: &[f64]) -> Metrics {
        let mut registry = Registry::with_prefix("prober");
        let metrics = Metrics {
            sent: Family::default(),
            replies: Family::default(),
            timeouts: Family::default(),
            duplicates: Family::default(),
            send_errors: Family::default(),
            rtt: Family::new_with_constructor(RttHistogram {
                buckets: rtt_buckets.into(),
            }),
            last_rtt: Family::default(),
            ttl: Family::default(),
            xdp: Family::default(),
            reloads: Family::default(),
            last_reload_successful: Gauge::default(),
            resolve_errors: Family::default(),
            registry: Registry::default(),
        };
        registry.register("probes_sent", "Probes sent", metrics.sent.clone());
        registry.register(
            "replies",
            "First replies to probes, by what they say (open, closed, echo, unreachable)",
            metrics.replies.clone(),
        );
        registry.register(
            "timeouts",
            "Probes without a reply within the timeout (loss)",
            metrics.timeouts.clone(),
        );
        registry.register(
            "duplicates",
            "Further replies to probes already answered",
            metrics.duplicates.clone(),
        );
        registry.register(
            "send_errors",
            "Probes the kernel refused to send",
            metrics.send_errors.clone(),
        );
        registry.register(
            "rtt_seconds",
            "Round trips of first replies (open, closed, echo), kernel-timed at both ends",
            metrics.rtt.clone(),
        );
        registry.register(
            "last_rtt_seconds",
            "The last reply's round trip",
            metrics.last_rtt.clone(),
        );
        registry.register(
            "reply_ttl",
            "The last reply's TTL (hop limit)",
            metrics.ttl.clone(),
        );
        registry.register(
            "xdp_packets",
            "What the reply matcher saw: matched, ring_full, unmatched (forged or stale), bounced, malformed",
            metrics.xdp.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads (SIGHUP), by result",
            metrics.reloads.clone(),
        );
        registry.register(
            "config_last_reload_successful",
            "Whether the last reload was taken",
            metrics.last_reload_successful.clone(),
        );
        registry.register(
            "resolve_errors",
            "Failed lookups of a target's name",
            metrics.resolve_errors.clone(),
        );
        let build: Family<BuildLabels, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "prober's version", build);
        metrics.last_reload_successful.set(1);
        // Both series from the start, so that `increase()` sees the first reload of each.
        for result in ["success", "failure"] {
            drop(metrics.reloads.get_or_create(&ResultLabel { result }));
        }
        Metrics {
            registry,
            ..metrics
        }
    }

    /// A target's reply series under `result`.
    pub fn reply_labels(labels: &TargetLabels, result: &'static str) -> ReplyLabels {
        ReplyLabels {
            host: labels.host.clone(),
            ip: labels.ip.clone(),
            probe: labels.probe.clone(),
            port: labels.port.clone(),
            source: labels.source.clone(),
            result,
        }
    }

    /// A new target's series, its counters and histogram created at zero (so that its loss
    /// and rates read 0 rather than nothing before its first timeout, duplicate or error), as
    /// handles its engine updates without looking its labels up per probe.
    pub fn announce(&self, labels: &TargetLabels) -> Series {
        Series {
            sent: self.sent.get_or_create_owned(labels),
            timeouts: self.timeouts.get_or_create_owned(labels),
            duplicates: self.duplicates.get_or_create_owned(labels),
            send_errors: self.send_errors.get_or_create_owned(labels),
            rtt: self.rtt.get_or_create_owned(labels),
            replies: results_of(&labels.probe)
                .iter()
                .map(|&result| {
                    let series = Metrics::reply_labels(labels, result);
                    (result, self.replies.get_or_create_owned(&series))
                })
                .collect(),
            last: None,
        }
    }

    /// The gauges of a target's last reply, created with it (none reads 0 before one came).
    pub fn last_reply(&self, labels: &TargetLabels) -> (FloatGauge, Gauge) {
        (
            self.last_rtt.get_or_create_owned(labels),
            self.ttl.get_or_create_owned(labels),
        )
    }

    /// Removes every series of a target no longer configured.
    pub fn forget(&self, labels: &TargetLabels) {
        for family in [
            &self.sent,
            &self.timeouts,
            &self.duplicates,
            &self.send_errors,
        ] {
            family.remove(labels);
        }
        self.rtt.remove(labels);
        self.last_rtt.remove(labels);
        self.ttl.remove(labels);
        for result in RESULTS {
            self.replies.remove(&Metrics::reply_labels(labels, result));
        }
    }
}
