//! `prober exporter` scraped by a real Prometheus server (Debian's prometheus, started by the test
//! on a loopback port, every second), probing a namespace host's open, closed and filtered port
//! and ICMP over IPv4 and IPv6; what the test asserts it reads back through Prometheus's HTTP API,
//! as a user's dashboards and alerts would:
//! (a) the series and their labels, the send rate against the interval, loss, the reply kinds,
//!     the RTT histogram against the replies, the XDP counters and the build info;
//! (b) `/probe` scraped with a blackbox_exporter-style config (relabelling `__param_target`);
//! (c) content negotiation: the text format by default, OpenMetrics when asked, and native
//!     histograms over protobuf for a Prometheus with the feature on.
//!
//! Queries that compare one metric with another name one evaluation time, so that they see the
//! same scrape.

use prober_tests::exporter::{has_labels, parse_samples, Exporter};
use prober_tests::prometheus::{Prometheus, Series};
use prober_tests::{require_root, Family, TestHost, CLOSED_PORT, FILTERED_PORT, OPEN_PORT};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

/// Every target's interval (and so its timeout), and the rate it makes.
const INTERVAL: &str = "200ms";
const PROBES_PER_SECOND: f64 = 5.0;
/// Probes of one target that may be neither answered nor timed out at a scrape: the one just
/// sent and the one whose timeout is running out, and one more for a scheduler running late.
const IN_FLIGHT: f64 = 3.0;
/// The window of rates and of the warm-up: ten scrapes.
const WINDOW: &str = "10s";
/// Bound on the wait for the first full window (Prometheus and the exporter starting included).
const WARM_UP: Duration = Duration::from_secs(60);
/// Linux's default TTL and IPv6 hop limit: what the namespace host's replies carry, one veth away.
const REPLY_TTL: f64 = 64.0;
/// A veth round trip takes microseconds; a median above this is a unit or stamping error.
const RTT_CEILING: f64 = 0.01;
/// The default RTT buckets: 5 µs doubling, 22 of them (to 10.48576 s).
const FIRST_BUCKET: f64 = 5e-6;
const BUCKETS: usize = 22;
/// The series every target has (the histogram by its count).
const PER_TARGET: [&str; 5] = [
    "prober_probes_sent_total",
    "prober_timeouts_total",
    "prober_duplicates_total",
    "prober_send_errors_total",
    "prober_rtt_seconds_count",
];
/// The XDP counter events of the contract.
const XDP_EVENTS: [&str; 5] = ["matched", "ring_full", "unmatched", "bounced", "malformed"];
/// What Prometheus sends when it prefers OpenMetrics (its Accept header, protobuf left out).
const ACCEPT_OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0,\
    application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// One kind of probe, and how the test host answers it.
struct Kind {
    probe: &'static str,
    port: Option<u16>,
    /// The `result` of its replies; None: nothing answers.
    answer: Option<&'static str>,
}

const OPEN: Kind = Kind {
    probe: "tcp-syn",
    port: Some(OPEN_PORT),
    answer: Some("open"),
};
const CLOSED: Kind = Kind {
    probe: "tcp-syn",
    port: Some(CLOSED_PORT),
    answer: Some("closed"),
};
const FILTERED: Kind = Kind {
    probe: "tcp-syn",
    port: Some(FILTERED_PORT),
    answer: None,
};
const ICMP: Kind = Kind {
    probe: "icmp",
    port: None,
    answer: Some("echo"),
};
const ALL_KINDS: [&Kind; 4] = [&OPEN, &CLOSED, &FILTERED, &ICMP];

/// Labels as Prometheus stores them.
type Labels = BTreeMap<String, String>;

/// One address of the test host probed one way.
struct Target {
    kind: &'static Kind,
    ip: IpAddr,
    source: IpAddr,
}

impl Target {
    /// Its labels on every per-target series, as Prometheus keeps them: the host as written in
    /// the config (here the address), and no `port` for ICMP (an empty label is no label).
    fn labels(&self) -> Labels {
        let mut labels = Labels::from([
            ("host".to_owned(), self.ip.to_string()),
            ("ip".to_owned(), self.ip.to_string()),
            ("probe".to_owned(), self.kind.probe.to_owned()),
            ("source".to_owned(), self.source.to_string()),
        ]);
        if let Some(port) = self.kind.port {
            labels.insert("port".to_owned(), port.to_string());
        }
        labels
    }
}

/// Both addresses of `host` probed each of the `kinds` ways.
fn targets(host: &TestHost, kinds: &[&'static Kind]) -> Vec<Target> {
    kinds
        .iter()
        .flat_map(|&kind| {
            [Family::V4, Family::V6].map(|family| Target {
                kind,
                ip: host.target(family),
                source: host.source(family),
            })
        })
        .collect()
}

/// The exporter's config: one entry per kind, with both of `host`'s addresses.
fn config(host: &TestHost, kinds: &[&Kind]) -> String {
    let mut yaml = String::from("targets:\n");
    for kind in kinds {
        yaml += &format!(
            "  - hosts: [\"{}\", \"{}\"]\n    probe: {}\n    interval: {INTERVAL}\n",
            host.addr, host.addr6, kind.probe
        );
        if let Some(port) = kind.port {
            yaml += &format!("    port: {port}\n");
        }
    }
    yaml
}

/// `exporter` probing both of `host`'s addresses each of the `kinds` ways, and a Prometheus
/// (`native`: with native histograms) scraping its `/metrics` as job `prober`, once it has
/// `WINDOW` of scrapes during which every target was being probed.
fn scraped_exporter(
    host: &TestHost,
    kinds: &[&'static Kind],
    native: bool,
) -> (Vec<Target>, Exporter, Prometheus) {
    let targets = targets(host, kinds);
    let exporter = Exporter::start(&[], Some(&config(host, kinds))).expect("prober exporter");
    let scrape = format!(
        "- job_name: prober\n  static_configs:\n    - targets: [\"{}\"]\n",
        exporter.addr()
    );
    let prometheus = if native {
        Prometheus::start_with_native_histograms(&scrape)
    } else {
        Prometheus::start(&scrape)
    }
    .expect("prometheus");
    let sent = "prober_probes_sent_total{job=\"prober\"}";
    let warm =
        format!("min_over_time({sent}[{WINDOW}]) > 0 and count_over_time({sent}[{WINDOW}]) >= 10");
    if let Err(e) = prometheus.wait_for(&warm, |warm| warm.len() == targets.len(), WARM_UP) {
        panic!(
            "{e:#}\ntargets: {}\nexporter's stderr: {:#?}",
            prometheus.targets(),
            exporter.stderr_lines()
        );
    }
    (targets, exporter, prometheus)
}

/// A moment whose scrape Prometheus has already stored, for queries that must see the same one.
fn just_scraped() -> SystemTime {
    SystemTime::now() - Duration::from_secs(1)
}

/// `labels` less what Prometheus adds (`__name__`, `job`, `instance`) and the `extra` ones.
fn target_part(labels: &Labels, extra: &[&str]) -> Labels {
    let mut labels = labels.clone();
    labels.retain(|key, _| {
        !["__name__", "job", "instance"].contains(&key.as_str()) && !extra.contains(&key.as_str())
    });
    labels
}

/// `expr` at `at`, each series keyed by its target's labels (`extra` labels left out); a panic
/// when two series share a key.
fn by_target(
    prometheus: &Prometheus,
    expr: &str,
    at: SystemTime,
    extra: &[&str],
) -> BTreeMap<Labels, f64> {
    let result = prometheus
        .query_at(expr, at)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let mut keyed = BTreeMap::new();
    for (labels, value) in &result {
        if keyed.insert(target_part(labels, extra), *value).is_some() {
            panic!("{expr}: two series for one target in {result:#?}");
        }
    }
    keyed
}

/// The values of `expr` at `at` for `targets`, in their order; a panic unless it has exactly
/// one series for each and no other.
fn per_target(prometheus: &Prometheus, expr: &str, at: SystemTime, targets: &[Target]) -> Vec<f64> {
    let keyed = by_target(prometheus, expr, at, &[]);
    let wanted: BTreeSet<Labels> = targets.iter().map(Target::labels).collect();
    let got: BTreeSet<Labels> = keyed.keys().cloned().collect();
    assert_eq!(got, wanted, "{expr}: the series are not one per target");
    targets
        .iter()
        .map(|target| keyed[&target.labels()])
        .collect()
}

/// Each target's first replies at `at`, by result.
fn replies_by_result(
    prometheus: &Prometheus,
    at: SystemTime,
) -> BTreeMap<Labels, BTreeMap<String, f64>> {
    let mut replies: BTreeMap<Labels, BTreeMap<String, f64>> = BTreeMap::new();
    for (labels, value) in prometheus
        .query_at("prober_replies_total{job=\"prober\"}", at)
        .expect("replies")
    {
        let result = labels.get("result").cloned().unwrap_or_default();
        replies
            .entry(target_part(&labels, &["result"]))
            .or_default()
            .insert(result, value);
    }
    replies
}

fn show(series: &[Series]) -> String {
    series
        .iter()
        .map(|(labels, value)| format!("  {value:<10} {labels:?}\n"))
        .collect()
}

/// (a) The issue's main test: every per-target series with the right labels, sending at the
/// interval's rate, loss 100 % where nothing answers and 0 % elsewhere, replies of the right
/// kind, a histogram that counts them, the XDP counters and the build info.
#[test]
fn prometheus_scrapes_every_kind_of_target() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let (targets, exporter, prometheus) = scraped_exporter(&host, &ALL_KINDS, false);
    let at = just_scraped();
    let up = prometheus.query_at("up{job=\"prober\"}", at).expect("up");
    assert!(
        up.len() == 1 && up[0].1 == 1.0,
        "up: {up:?}\n{}",
        prometheus.targets()
    );
    let loss = "prober_timeouts_total{job=\"prober\"} / prober_probes_sent_total{job=\"prober\"}";
    let shown = prometheus.query_at(loss, at).expect("loss");
    println!(
        "{loss} (probes every {INTERVAL}, scraped every 1s):\n{}",
        show(&shown)
    );
    check_series_per_target(&prometheus, &targets, at);

    let rates = per_target(
        &prometheus,
        &format!("rate(prober_probes_sent_total{{job=\"prober\"}}[{WINDOW}])"),
        at,
        &targets,
    );
    let sent = per_target(&prometheus, "prober_probes_sent_total", at, &targets);
    let timeouts = per_target(&prometheus, "prober_timeouts_total", at, &targets);
    let rtt_counts = per_target(&prometheus, "prober_rtt_seconds_count", at, &targets);
    let send_errors = per_target(&prometheus, "prober_send_errors_total", at, &targets);
    let replies = replies_by_result(&prometheus, at);

    for (i, target) in targets.iter().enumerate() {
        let name = format!(
            "{:?} {:?} {}",
            target.kind.probe, target.kind.port, target.ip
        );
        // 20 % either way: a factor of 2 (or a unit mistake) is far outside.
        assert!(
            (rates[i] - PROBES_PER_SECOND).abs() <= 0.2 * PROBES_PER_SECOND,
            "{name}: {}/s sent over {WINDOW}, every {INTERVAL} is {PROBES_PER_SECOND}/s",
            rates[i]
        );
        assert_eq!(send_errors[i], 0.0, "{name}: send errors");
        let target_replies = replies.get(&target.labels()).cloned().unwrap_or_default();
        let answered: f64 = target_replies.values().sum();
        assert_eq!(
            rtt_counts[i], answered,
            "{name}: histogram count against {target_replies:?}"
        );
        match target.kind.answer {
            Some(result) => {
                // Loss 0 %: no probe timed out, each was answered but for those on their way.
                assert_eq!(timeouts[i], 0.0, "{name}: timeouts (sent {})", sent[i]);
                assert!(
                    (0.0..=IN_FLIGHT).contains(&(sent[i] - answered)),
                    "{name}: {} sent, {target_replies:?} answered",
                    sent[i]
                );
                assert_eq!(
                    target_replies.iter().filter(|(_, &n)| n > 0.0).count(),
                    1,
                    "{name}: replies other than {result:?}: {target_replies:?}"
                );
                assert!(target_replies.get(result).is_some_and(|&n| n > 0.0));
            }
            None => {
                // Loss 100 %: nothing answered, each probe timed out but for those on their way.
                assert_eq!(answered, 0.0, "{name}: replies {target_replies:?}");
                assert!(
                    (0.0..=IN_FLIGHT).contains(&(sent[i] - timeouts[i])),
                    "{name}: {} sent, {} timed out",
                    sent[i],
                    timeouts[i]
                );
            }
        }
    }

    // Ground truth for "sent": the probes to the filtered port that the namespace's nftables
    // dropped, read after `at`: at least what the exporter had counted then, at most that and
    // what both targets have sent since (and a second more).
    let filtered_sent: f64 = targets
        .iter()
        .zip(&sent)
        .filter(|(target, _)| target.kind.answer.is_none())
        .map(|(_, sent)| sent)
        .sum();
    let dropped = host.dropped_packets(FILTERED_PORT).expect("nft counter") as f64;
    let since = at.elapsed().expect("`at` is past").as_secs_f64();
    let later = 2.0 * PROBES_PER_SECOND * (since + 1.0);
    assert!(
        (filtered_sent..=filtered_sent + later).contains(&dropped),
        "nftables dropped {dropped} probes to port {FILTERED_PORT}, the exporter had sent \
         {filtered_sent} {since:.1} s before"
    );

    let answered: Vec<Target> = targets
        .into_iter()
        .filter(|target| target.kind.answer.is_some())
        .collect();
    let last_rtts = by_target(&prometheus, "prober_last_rtt_seconds", at, &[]);
    let ttls = by_target(&prometheus, "prober_reply_ttl", at, &[]);
    let medians = by_target(
        &prometheus,
        &format!(
            "histogram_quantile(0.5, rate(prober_rtt_seconds_bucket{{job=\"prober\"}}[{WINDOW}]))"
        ),
        at,
        &["le"],
    );
    for target in &answered {
        let labels = target.labels();
        for (what, value) in [("last RTT", &last_rtts), ("median RTT", &medians)] {
            let value = value.get(&labels).copied();
            assert!(
                value.is_some_and(|rtt| rtt > 0.0 && rtt < RTT_CEILING),
                "{what} of {labels:?}: {value:?} s"
            );
        }
        assert_eq!(
            ttls.get(&labels),
            Some(&REPLY_TTL),
            "reply TTL of {labels:?}"
        );
    }
    check_buckets(&prometheus, &answered[0], at);
    check_process_series(&prometheus, &host, at);
    exporter.stop();
}

/// Each per-target series there for every target from its first scrape on, a counter at 0
/// until its first event: a loss of `timeouts / sent` is then 0 rather than absent, and a rate
/// of errors 0 rather than no data. All that is missing in one failure.
fn check_series_per_target(prometheus: &Prometheus, targets: &[Target], at: SystemTime) {
    let wanted: BTreeSet<Labels> = targets.iter().map(Target::labels).collect();
    let missing: Vec<String> = PER_TARGET
        .iter()
        .flat_map(|name| {
            let got = by_target(prometheus, name, at, &[]);
            wanted
                .iter()
                .filter(move |labels| !got.contains_key(*labels))
                .map(move |labels| format!("{name} {labels:?}"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "series missing:\n{}",
        missing.join("\n")
    );
}

/// The default buckets of `target`'s histogram: 5 µs doubling, 22 and +Inf, cumulative, +Inf
/// holding the count.
fn check_buckets(prometheus: &Prometheus, target: &Target, at: SystemTime) {
    let selector: Vec<String> = target
        .labels()
        .iter()
        .map(|(key, value)| format!("{key}=\"{value}\""))
        .collect();
    let selector = selector.join(",");
    let mut buckets: Vec<(f64, f64)> = prometheus
        .query_at(&format!("prober_rtt_seconds_bucket{{{selector}}}"), at)
        .expect("buckets")
        .into_iter()
        .map(|(labels, count)| (labels["le"].parse().expect("le is a number"), count))
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let bounds: Vec<f64> = buckets.iter().map(|&(le, _)| le).collect();
    let wanted: Vec<f64> = (0..BUCKETS)
        .map(|i| FIRST_BUCKET * f64::from(1u32 << i))
        .chain([f64::INFINITY])
        .collect();
    assert!(
        bounds.len() == wanted.len()
            && bounds
                .iter()
                .zip(&wanted)
                .all(|(got, want)| got == want || (got - want).abs() <= want * 1e-9),
        "bucket bounds {bounds:?}, wanted {wanted:?}"
    );
    assert!(
        buckets.windows(2).all(|pair| pair[0].1 <= pair[1].1),
        "buckets not cumulative: {buckets:?}"
    );
    let count = prometheus
        .query_at(&format!("prober_rtt_seconds_count{{{selector}}}"), at)
        .expect("count");
    assert_eq!(count.len(), 1);
    assert_eq!(
        buckets.last().map(|b| b.1),
        Some(count[0].1),
        "+Inf against _count"
    );
}

/// The XDP counters of the host's veth (every event; matches, no ring-buffer overflow) and the
/// build info.
fn check_process_series(prometheus: &Prometheus, host: &TestHost, at: SystemTime) {
    let xdp = prometheus
        .query_at(
            &format!("prober_xdp_packets_total{{interface=\"{}\"}}", host.host_if),
            at,
        )
        .expect("xdp counters");
    let events: BTreeSet<&str> = xdp
        .iter()
        .map(|(labels, _)| labels["event"].as_str())
        .collect();
    assert!(
        XDP_EVENTS.iter().all(|event| events.contains(event)),
        "XDP events {events:?}, wanted {XDP_EVENTS:?}:\n{}",
        show(&xdp)
    );
    let total = |event: &str| -> f64 {
        xdp.iter()
            .filter(|(labels, _)| labels["event"] == event)
            .map(|(_, n)| n)
            .sum()
    };
    assert!(total("matched") > 0.0, "no XDP matches:\n{}", show(&xdp));
    assert_eq!(
        total("ring_full"),
        0.0,
        "ring buffer full at 40 probes/s:\n{}",
        show(&xdp)
    );
    let build = prometheus
        .query_at("prober_build_info", at)
        .expect("build info");
    assert!(
        build.len() == 1
            && build[0].1 == 1.0
            && build[0].0.get("version").is_some_and(|v| !v.is_empty()),
        "prober_build_info: {build:?}"
    );
}

/// The job that scrapes `/probe` for `kind`: `probe-tcp-syn-80`, `probe-icmp`.
fn job_name(kind: &Kind) -> String {
    match kind.port {
        Some(port) => format!("probe-{}-{port}", kind.probe),
        None => format!("probe-{}", kind.probe),
    }
}

/// Prometheus's scrape config for `/probe` on `exporter`, blackbox_exporter style: a job that
/// probes both of `host`'s addresses (`count` 3, timeout 500 ms: the scrape's 1 s bounds it),
/// each target's address passed as `target` and kept as `instance`.
fn probe_job(kind: &Kind, host: &TestHost, exporter: &Exporter) -> String {
    let port_param = kind
        .port
        .map(|port| format!("    port: [\"{port}\"]\n"))
        .unwrap_or_default();
    format!(
        r#"- job_name: {job}
  metrics_path: /probe
  params:
    probe: [{probe}]
{port_param}    count: ["3"]
    timeout: [500ms]
  static_configs:
    - targets: ["{addr}", "{addr6}"]
  relabel_configs:
    - source_labels: [__address__]
      target_label: __param_target
    - source_labels: [__param_target]
      target_label: instance
    - target_label: __address__
      replacement: "{exporter}"
"#,
        job = job_name(kind),
        probe = kind.probe,
        addr = host.addr,
        addr6 = host.addr6,
        exporter = exporter.addr(),
    )
}

/// (b) `/probe` as Prometheus scrapes it with a blackbox-style config: `probe_success` 1 where
/// the host answers (SYN-ACK, RST-ACK, echo reply), 0 for the filtered port, in every scrape;
/// three probes sent each time, the replies and their RTTs counted; a bad request refused.
#[test]
fn blackbox_style_probe_scrapes() {
    require_root();
    let host = TestHost::standard().expect("test host");
    // One target of its own, as a deployment that also watches the host all the time; one with
    // none is `probe_without_targets_of_its_own`.
    let own_target = host.addr.to_string();
    let exporter = Exporter::start(&["-1", &own_target], None).expect("prober exporter");
    let jobs: String = ALL_KINDS
        .iter()
        .map(|kind| probe_job(kind, &host, &exporter))
        .collect();
    let prometheus = Prometheus::start(&jobs).expect("prometheus");
    let scrapes = "count_over_time(probe_success[5s]) >= 3";
    if let Err(e) = prometheus.wait_for(scrapes, |done| done.len() == 8, WARM_UP) {
        panic!(
            "{e:#}\ntargets: {}\nexporter's stderr: {:#?}",
            prometheus.targets(),
            exporter.stderr_lines()
        );
    }
    let at = just_scraped();
    let instances = [host.addr.to_string(), host.addr6.to_string()];
    let by_instance = |expr: &str| -> BTreeMap<(String, String), f64> {
        let result = prometheus.query_at(expr, at).expect(expr);
        result
            .iter()
            .map(|(labels, value)| ((labels["job"].clone(), labels["instance"].clone()), *value))
            .collect()
    };
    // One value per job and instance, all of both hosts' addresses there.
    let by_job = |expr: &str| -> BTreeMap<(String, String), f64> {
        let keyed = by_instance(expr);
        assert_eq!(keyed.len(), 8, "{expr}: {keyed:#?}");
        keyed
    };
    let up = by_job("up{job=~\"probe-.*\"}");
    let lowest = by_job("min_over_time(probe_success[5s])");
    let highest = by_job("max_over_time(probe_success[5s])");
    let sent = by_job("probe_sent_total");
    let replies = by_job("probe_replies_total");
    let durations = by_job("probe_duration_seconds");
    let rtts = by_instance("count by (job, instance) (probe_rtt_seconds)");
    println!(
        "probe_success as Prometheus recorded it:\n{}",
        show(
            &prometheus
                .query_at("probe_success", at)
                .expect("probe_success")
        )
    );
    for kind in ALL_KINDS {
        let job = job_name(kind);
        for instance in &instances {
            let key = (job.clone(), instance.clone());
            assert_eq!(
                up[&key],
                1.0,
                "{key:?}: scrape failed\n{}",
                prometheus.targets()
            );
            assert_eq!(sent[&key], 3.0, "{key:?}: probes sent");
            let rtt_gauges = rtts.get(&key).copied();
            match kind.answer {
                Some(_) => {
                    assert_eq!(lowest[&key], 1.0, "{key:?}: a scrape without success");
                    assert_eq!(replies[&key], 3.0, "{key:?}: replies");
                    assert_eq!(rtt_gauges, Some(3.0), "{key:?}: probe_rtt_seconds gauges");
                    // Three probes 10 ms apart.
                    assert!(
                        (0.02..1.0).contains(&durations[&key]),
                        "{key:?}: took {} s",
                        durations[&key]
                    );
                }
                None => {
                    assert_eq!(highest[&key], 0.0, "{key:?}: a scrape with success");
                    assert_eq!(replies[&key], 0.0, "{key:?}: replies");
                    assert_eq!(rtt_gauges, None, "{key:?}: probe_rtt_seconds gauges");
                    // Waited out its timeout.
                    assert!(
                        (0.5..1.0).contains(&durations[&key]),
                        "{key:?}: took {} s",
                        durations[&key]
                    );
                }
            }
        }
    }
    for bad in [
        format!("/probe?target={}&probe=udp", host.addr),
        format!("/probe?target={}&probe=tcp-syn", host.addr),
        "/probe?probe=icmp".to_owned(),
    ] {
        let (status, _, body) = exporter.get(&bad, None).expect("GET");
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(
            body.trim_end().lines().count(),
            1,
            "{bad}: not one line: {body:?}"
        );
    }
    exporter.stop();
}

/// `/probe` from an exporter with no targets of its own, as blackbox_exporter is deployed: it
/// serves, and probes on demand.
#[test]
fn probe_without_targets_of_its_own() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let exporter = Exporter::start(&[], None).expect("prober exporter without targets");
    let target = host.addr6.to_string();
    let (status, _, body) = exporter
        .get(
            &format!("/probe?target={target}&probe=tcp-syn&port={OPEN_PORT}"),
            None,
        )
        .expect("GET /probe");
    assert_eq!(status, 200, "{body}");
    let samples = parse_samples(&body).expect("probe's metrics");
    let value = |name: &str| {
        samples
            .iter()
            .find(|sample| sample.name == name)
            .map(|s| s.value)
    };
    assert_eq!(value("probe_success"), Some(1.0), "{body}");
    assert_eq!(value("probe_replies_total"), Some(1.0), "{body}");
    exporter.stop();
}

/// (c) The text format by default and OpenMetrics when asked for, fetched from the exporter; and
/// a Prometheus with native histograms on, which asks for protobuf first: it stores
/// `prober_rtt_seconds` as a native histogram (the text formats cannot carry one) whose count is
/// each target's replies.
#[test]
fn content_negotiation_and_native_histograms() {
    require_root();
    let host = TestHost::standard().expect("test host");
    let (targets, exporter, prometheus) = scraped_exporter(&host, &[&OPEN, &ICMP], true);
    let open4 = targets[0].labels();
    let open4: Vec<(&str, &str)> = open4
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    for (accept, content_type, eof) in [
        (None, "text/plain; version=0.0.4", false),
        (
            Some(ACCEPT_OPENMETRICS),
            "application/openmetrics-text",
            true,
        ),
    ] {
        let (status, got_type, body) = exporter.get("/metrics", accept).expect("GET /metrics");
        let what = format!("GET /metrics with Accept {accept:?}");
        assert_eq!(status, 200, "{what}: {body}");
        assert!(
            got_type
                .replace(' ', "")
                .starts_with(&content_type.replace(' ', "")),
            "{what}: Content-Type {got_type:?}, wanted {content_type:?}"
        );
        assert_eq!(body.ends_with("# EOF\n"), eof, "{what}: the end of\n{body}");
        let samples = parse_samples(&body).unwrap_or_else(|e| panic!("{what}: {e:#}"));
        assert!(
            samples
                .iter()
                .any(|sample| sample.name == "prober_probes_sent_total"
                    && sample.value > 0.0
                    && has_labels(sample, &open4)),
            "{what}: no prober_probes_sent_total for {open4:?}:\n{body}"
        );
        assert!(
            body.contains("# TYPE prober_rtt_seconds histogram"),
            "{what}: no histogram:\n{body}"
        );
    }

    let count = "histogram_count(prober_rtt_seconds{job=\"prober\"})";
    let have_counts = |counts: &[Series]| counts.len() == targets.len();
    if let Err(e) = prometheus.wait_for(count, have_counts, Duration::from_secs(10)) {
        panic!(
            "{e:#}: no native histogram stored\ntargets: {}",
            prometheus.targets()
        );
    }
    let at = just_scraped();
    let counts = per_target(&prometheus, count, at, &targets);
    let replies = per_target(
        &prometheus,
        "sum without (result) (prober_replies_total)",
        at,
        &targets,
    );
    let medians = per_target(
        &prometheus,
        "histogram_quantile(0.5, prober_rtt_seconds)",
        at,
        &targets,
    );
    println!(
        "{count} (native):\n{}",
        show(&prometheus.query_at(count, at).expect("counts"))
    );
    for (i, target) in targets.iter().enumerate() {
        assert!(counts[i] > 0.0, "{:?}: no observations", target.labels());
        assert_eq!(
            counts[i],
            replies[i],
            "{:?}: count against replies",
            target.labels()
        );
        assert!(
            medians[i] > 0.0 && medians[i] < RTT_CEILING,
            "{:?}: median RTT {} s",
            target.labels(),
            medians[i]
        );
    }
    exporter.stop();
}
