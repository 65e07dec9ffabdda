//! Keeps the engines matching the configuration: resolves each target's name (again every
//! `resolve_interval`), routes it, groups the targets by [`EngineKey`], starts the engines and
//! hands each its targets; an engine that ended (its interface removed or its targets
//! rerouted) is rebuilt, and targets without a route are routed again, every second.
use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _, Result};

use super::{
    config::{Config, Probe, TargetSpec},
    engine::{self, Command, EngineKey, Handle, OnDemand, Target},
    log,
    metrics::{HostLabel, Metrics, TargetLabels},
};
use crate::{
    bpf::AttachMode,
    net::{resolve, route, Route},
};

/// How long an engine that cannot be built waits before the next try.
const RETRY_AFTER: Duration = Duration::from_secs(1);

pub struct Supervisor {
    config: Config,
    xdp_mode: Option<AttachMode>,
    metrics: Arc<Metrics>,
    /// Each name's address, and when it is looked up next. Literals are their own.
    names: HashMap<String, Name>,
    engines: BTreeMap<EngineKey, Handle>,
    /// Each engine's targets, as last handed over.
    assigned: BTreeMap<EngineKey, Vec<Target>>,
    /// Engines started for `/probe` alone, kept for the next requests.
    on_demand: Vec<EngineKey>,
    /// Engines that hold their interface's XDP hook (`--xdp-mode native`).
    native: Vec<EngineKey>,
    /// What last went wrong per target or engine, said once until it changes.
    problems: HashMap<String, String>,
    next_retry: Instant,
    /// Each target's labels when it was last probed, and for a target no engine probes now
    /// (its interface gone, no route), when its next probe is due: each one due meanwhile is
    /// a send error under those labels, so that its loss does not read 0 of 0.
    last_labels: HashMap<Identity, TargetLabels>,
    unsent: HashMap<Identity, Instant>,
}

/// A configured target, whatever its address and route: host as written, probe, port.
type Identity = (String, String, String);

fn identity(spec: &TargetSpec) -> Identity {
    (
        spec.host.clone(),
        spec.probe.name().to_owned(),
        spec.port.map(|port| port.to_string()).unwrap_or_default(),
    )
}

fn identity_of(labels: &TargetLabels) -> Identity {
    (
        labels.host.clone(),
        labels.probe.clone(),
        labels.port.clone(),
    )
}

/// Targets grouped by engine, and those that could not be routed (with why).
type Routed = (
    BTreeMap<EngineKey, Vec<Target>>,
    Vec<(TargetSpec, anyhow::Error)>,
);

struct Name {
    ip: IpAddr,
    next_lookup: Instant,
}

impl Supervisor {
    /// Resolves every target (a name that does not resolve is an error here) and starts the
    /// engines.
    pub fn start(
        config: Config,
        xdp_mode: Option<AttachMode>,
        metrics: Arc<Metrics>,
    ) -> Result<Supervisor> {
        let mut supervisor = Supervisor {
            xdp_mode,
            names: HashMap::new(),
            config,
            metrics,
            engines: BTreeMap::new(),
            assigned: BTreeMap::new(),
            on_demand: Vec::new(),
            native: Vec::new(),
            problems: HashMap::new(),
            next_retry: Instant::now(),
            last_labels: HashMap::new(),
            unsent: HashMap::new(),
        };
        supervisor.names = supervisor.resolve_new(&supervisor.config.targets)?;
        let (assigned, unrouted) = supervisor.route_all();
        if let Some((target, error)) = unrouted.into_iter().next() {
            return Err(error.context(format!("routing {}", target.host)));
        }
        for (key, targets) in assigned {
            let route = route::lookup(targets[0].ip, None)?;
            let handle = supervisor.start_engine(&key, route, targets.clone())?;
            supervisor.engines.insert(key.clone(), handle);
            supervisor.assigned.insert(key, targets);
        }
        supervisor.note_unsent();
        Ok(supervisor)
    }

    /// Takes a new configuration, or refuses it whole (the old one stays); the number of
    /// targets it has.
    pub fn reconfigure(&mut self, config: Config) -> Result<usize> {
        if config.listen != self.config.listen {
            return Err(anyhow!("listen changed: that takes a restart"));
        }
        if config.rtt_buckets != self.config.rtt_buckets {
            return Err(anyhow!("rtt_buckets changed: that takes a restart"));
        }
        let mut names = self.resolve_new(&config.targets)?;
        // Names already known keep their address and lookup schedule.
        for target in &config.targets {
            if let Some(known) = self.names.remove(&target.host) {
                names.insert(target.host.clone(), known);
            }
        }
        self.names = names;
        self.config = config;
        self.apply();
        Ok(self.config.targets.len())
    }

    /// Once a second: rebuilds what ended, routes what had no route, looks up names due.
    pub fn maintain(&mut self) {
        let mut changed = false;
        let ended: Vec<EngineKey> = self
            .engines
            .iter()
            .filter(|(_, handle)| handle.thread.is_finished())
            .map(|(key, _)| key.clone())
            .collect();
        for key in ended {
            let handle = self.engines.remove(&key).expect("listed");
            let why = match handle.thread.join() {
                Ok(Ok(())) => "ended".to_owned(),
                Ok(Err(error)) => format!("{error:#}"),
                Err(_) => "its thread panicked".to_owned(),
            };
            log(format_args!(
                "{} {} {}: {why}; rebuilding",
                key.interface, key.source, key.probe
            ));
            self.assigned.remove(&key);
            self.on_demand.retain(|other| *other != key);
            changed = true;
        }
        let now = Instant::now();
        let due: Vec<String> = self
            .names
            .iter()
            .filter(|(_, name)| name.next_lookup <= now)
            .map(|(host, _)| host.clone())
            .collect();
        for host in due {
            changed |= self.look_up_again(&host, now);
        }
        if changed || (!self.unsent.is_empty() && now >= self.next_retry) {
            self.next_retry = now + RETRY_AFTER;
            self.apply();
        }
        self.count_unsent(now);
    }

    /// Notes which targets no engine probes now, and the labels of those that one does.
    fn note_unsent(&mut self) {
        let probed: HashMap<Identity, &TargetLabels> = self
            .assigned
            .values()
            .flatten()
            .map(|target| (identity_of(&target.labels), &target.labels))
            .collect();
        for (identity, labels) in &probed {
            self.last_labels.insert(identity.clone(), (*labels).clone());
        }
        let now = Instant::now();
        let mut unsent = HashMap::new();
        for spec in &self.config.targets {
            let identity = identity(spec);
            if !probed.contains_key(&identity) {
                let due = self.unsent.get(&identity).copied();
                unsent.insert(identity, due.unwrap_or(now + spec.interval));
            }
        }
        self.unsent = unsent;
        let configured: Vec<Identity> = self.config.targets.iter().map(identity).collect();
        self.last_labels
            .retain(|identity, _| configured.contains(identity));
    }

    /// Counts a send error for each probe due by `now` to a target no engine probes.
    fn count_unsent(&mut self, now: Instant) {
        for spec in &self.config.targets {
            let identity = identity(spec);
            let (Some(due), Some(labels)) = (
                self.unsent.get_mut(&identity),
                self.last_labels.get(&identity),
            ) else {
                continue;
            };
            while *due <= now {
                self.metrics.send_errors.get_or_create(labels).inc();
                *due += spec.interval;
            }
        }
    }

    /// The engine for `probe` to `ip`, started if none runs, for an on-demand request.
    pub fn probe_once(&mut self, probe: Probe, request: OnDemand) -> Result<()> {
        let route = route::lookup(request.ip, None)?;
        let key = key_of(&route, probe);
        if !self.engines.contains_key(&key) {
            let handle = self.start_engine(&key, route, Vec::new())?;
            self.engines.insert(key.clone(), handle);
            self.on_demand.push(key.clone());
        }
        self.engines[&key]
            .commands
            .send(Command::Probe(request))
            .map_err(|_| anyhow!("the engine on {} has stopped", key.interface))
    }

    /// The labels of every target probed now, engine by engine.
    pub fn listed(&self) -> Vec<TargetLabels> {
        self.assigned
            .values()
            .flatten()
            .map(|target| target.labels.clone())
            .collect()
    }

    /// Starts the engine for `key`. An interface's XDP hook holds one program: with
    /// `--xdp-mode native` the first engine on an interface takes it, and the others there
    /// (other probe kinds, the other family) match at TCX ingress, as said once.
    fn start_engine(
        &mut self,
        key: &EngineKey,
        route: Route,
        targets: Vec<Target>,
    ) -> Result<Handle> {
        let hook_held = self
            .native
            .iter()
            .any(|other| other.interface == key.interface && self.engines.contains_key(other));
        let mode = match self.xdp_mode {
            Some(AttachMode::Native) if hook_held => {
                self.say_once(
                    format!("{} {} {} hook", key.interface, key.source, key.probe),
                    format!(
                        "{} {} {}: the XDP hook is another engine's (native XDP holds one \
                         program): matching at TCX ingress",
                        key.interface, key.source, key.probe
                    ),
                );
                None
            }
            mode => mode,
        };
        let handle = engine::start(key.clone(), route, mode, self.metrics.clone(), targets)?;
        self.native.retain(|other| other != key);
        if mode == Some(AttachMode::Native) {
            self.native.push(key.clone());
        }
        Ok(handle)
    }

    /// Stops every engine and waits for them to detach (all at once: each detach waits for
    /// the kernel).
    pub fn stop(&mut self) {
        let threads: Vec<_> = std::mem::take(&mut self.engines)
            .into_values()
            .map(|handle| handle.thread)
            .collect();
        for thread in threads {
            let _ = thread.join();
        }
    }

    /// Routes every target and hands each engine its list: new engines are started, those
    /// left without targets stopped (their series removed).
    fn apply(&mut self) {
        let (assigned, unrouted) = self.route_all();
        for (target, error) in unrouted {
            self.say_once(
                format!("{} {}", target.host, target.probe),
                format!("{}: {error:#}; trying again every second", target.host),
            );
        }
        for (key, targets) in &assigned {
            if let Some(handle) = self.engines.get(key) {
                if self.assigned.get(key) != Some(targets) {
                    let _ = handle.commands.send(Command::Targets(targets.clone()));
                }
                continue;
            }
            let started = route::lookup(targets[0].ip, None)
                .and_then(|route| self.start_engine(key, route, targets.clone()));
            match started {
                Ok(handle) => {
                    self.problems.remove(&key.interface);
                    log(format_args!(
                        "{} {} {}: probing {} targets",
                        key.interface,
                        key.source,
                        key.probe,
                        targets.len()
                    ));
                    self.engines.insert(key.clone(), handle);
                }
                Err(error) => self.say_once(
                    key.interface.clone(),
                    format!("{}: {error:#}; trying again every second", key.interface),
                ),
            }
        }
        let gone: Vec<EngineKey> = self
            .engines
            .keys()
            .filter(|key| !assigned.contains_key(*key) && !self.on_demand.contains(key))
            .cloned()
            .collect();
        for key in gone {
            let handle = self.engines.remove(&key).expect("listed");
            drop(handle.commands);
            let _ = handle.thread.join();
            for target in self.assigned.get(&key).into_iter().flatten() {
                self.metrics.forget(&target.labels);
            }
        }
        for (key, handle) in &self.engines {
            // An on-demand engine that now has configured targets gets them (and one that
            // lost them keeps running for `/probe`).
            if !assigned.contains_key(key) && self.assigned.contains_key(key) {
                let _ = handle.commands.send(Command::Targets(Vec::new()));
            }
        }
        self.assigned = assigned
            .into_iter()
            .filter(|(key, _)| self.engines.contains_key(key))
            .collect();
        self.note_unsent();
    }

    /// Each target with an address, routed and grouped by engine; and those without a route.
    fn route_all(&self) -> Routed {
        let mut assigned: BTreeMap<EngineKey, Vec<Target>> = BTreeMap::new();
        let mut unrouted = Vec::new();
        for spec in &self.config.targets {
            let ip = self.names[&spec.host].ip;
            match route::lookup(ip, None) {
                Ok(route) => {
                    let target = Target {
                        ip,
                        port: spec.port.unwrap_or(0),
                        interval: spec.interval,
                        timeout: spec.timeout,
                        labels: TargetLabels {
                            host: spec.host.clone(),
                            ip: ip.to_string(),
                            probe: spec.probe.name().to_owned(),
                            port: spec.port.map(|port| port.to_string()).unwrap_or_default(),
                            source: route.source.to_string(),
                        },
                    };
                    assigned
                        .entry(key_of(&route, spec.probe))
                        .or_default()
                        .push(target);
                }
                Err(error) => unrouted.push((spec.clone(), error)),
            }
        }
        (assigned, unrouted)
    }

    /// The addresses of the hosts in `targets` not yet known: an error for any that does not
    /// resolve.
    fn resolve_new(&self, targets: &[TargetSpec]) -> Result<HashMap<String, Name>> {
        let mut names = HashMap::new();
        for target in targets {
            if self.names.contains_key(&target.host) || names.contains_key(&target.host) {
                continue;
            }
            let ip = address(&target.host)
                .with_context(|| format!("target {} {}", target.host, target.probe))?;
            let next_lookup = Instant::now() + self.config.resolve_interval;
            names.insert(target.host.clone(), Name { ip, next_lookup });
        }
        Ok(names)
    }

    /// Looks `host` up again: true when it moved. A failed lookup keeps the last address.
    fn look_up_again(&mut self, host: &str, now: Instant) -> bool {
        let interval = self.config.resolve_interval;
        let Some(name) = self.names.get_mut(host) else {
            return false;
        };
        name.next_lookup = now + interval;
        if resolve::Host::is_literal(host) {
            return false;
        }
        match address(host) {
            Ok(ip) if ip == name.ip => {
                if self.problems.remove(host).is_some() {
                    log(format_args!("{host} resolves again, to {}", name.ip));
                }
                false
            }
            Ok(ip) => {
                log(format_args!(
                    "{host} now resolves to {ip} (was {}): probing it there",
                    name.ip
                ));
                name.ip = ip;
                self.problems.remove(host);
                true
            }
            Err(error) => {
                let ip = name.ip;
                self.metrics
                    .resolve_errors
                    .get_or_create(&HostLabel {
                        host: host.to_owned(),
                    })
                    .inc();
                self.say_once(
                    host.to_owned(),
                    format!("{error:#}; probing its last address, {ip}, meanwhile"),
                );
                false
            }
        }
    }

    /// Logs `message` unless it is what was last said about `subject`.
    fn say_once(&mut self, subject: String, message: String) {
        if self.problems.get(&subject) != Some(&message) {
            log(format_args!("{message}"));
            self.problems.insert(subject, message);
        }
    }
}

/// The address a target's host names now.
pub fn address(host: &str) -> Result<IpAddr> {
    let destination = resolve::resolve(host, None)?;
    // A zone names an interface, which the routes the engines follow do not.
    if destination.zone.is_some() {
        bail!("link-local addresses are not probed by the exporter");
    }
    Ok(destination.ip)
}

fn key_of(route: &Route, probe: Probe) -> EngineKey {
    EngineKey {
        interface: route.interface.name.clone(),
        source: route.source,
        probe,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_targets_are_refused_and_literals_are_their_own_address() {
        let refused = address("fe80::1%lo").expect_err("a zone");
        assert!(format!("{refused:#}").contains("link-local"), "{refused:#}");
        assert_eq!(address("2001:db8::2").ok(), "2001:db8::2".parse().ok());
        assert_eq!(address("198.18.0.2").ok(), "198.18.0.2".parse().ok());
    }
}
