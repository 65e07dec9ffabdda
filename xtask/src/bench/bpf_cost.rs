//! What prober's BPF programs cost per packet during one run: the kernel's own run counters
//! (BPF_ENABLE_STATS, held only while the run lasts: they cost a clock read per program run,
//! for every program on the machine) of the programs attached to the bed's veth, read while
//! they are loaded (they go with prober).

use std::collections::BTreeMap;
use std::fmt;
use std::os::fd::OwnedFd;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use aya::programs::tc::{SchedClassifier, TcAttachType};
use aya::programs::{loaded_programs, ProgramInfo};
use aya::sys::{enable_stats, Stats};

use crate::env;

/// Between two reads of the counters (a read walks the loaded programs, a handful): the counts
/// are those of the last read, at most this long before prober exited and took its programs
/// along, which may miss the last replies of a sweep that ends as soon as all are in.
const READ_EVERY: Duration = Duration::from_millis(10);

/// One program attached to the veth: where, and its counters at the last read.
#[derive(Clone, PartialEq, Debug)]
pub struct ProgramCost {
    /// `xdp`, `tcx/egress`, `tcx/ingress`, or the tc hook bpftool names (`clsact/egress`).
    pub hook: String,
    pub runs: u64,
    pub run_ns: u64,
}

impl ProgramCost {
    fn read(&mut self, info: &ProgramInfo) {
        self.runs = info.run_count();
        self.run_ns = u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX);
    }
}

impl fmt::Display for ProgramCost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per_run = if self.runs > 0 {
            self.run_ns as f64 / self.runs as f64
        } else {
            0.0
        };
        write!(f, "{} {} runs x {per_run:.0} ns", self.hook, self.runs)
    }
}

pub struct Sampler {
    interface: String,
    /// Keeps the counters on; closing it turns them off (unless someone else holds them on).
    _stats: OwnedFd,
    /// Program id → its hook and counters.
    programs: BTreeMap<u32, ProgramCost>,
    /// What the last `bpftool net` lookup found; two lookups in a row found the same programs:
    /// the XDP program (and any clsact one) is attached. (This bpftool does not list TCX
    /// programs; they are asked for by interface at every read.)
    listed: Vec<u32>,
    attached: bool,
    next_read: Instant,
}

impl Sampler {
    /// Turns the counters on, to read those of the programs on `interface`.
    pub fn start(interface: &str) -> Result<Sampler> {
        let stats = enable_stats(Stats::RunTime).context("BPF_ENABLE_STATS")?;
        Ok(Sampler {
            interface: interface.to_owned(),
            _stats: stats,
            programs: BTreeMap::new(),
            listed: Vec::new(),
            attached: false,
            next_read: Instant::now(),
        })
    }

    /// Reads the counters if READ_EVERY has passed; until the programs are all attached, looks
    /// for them first. Errors only leave a gap (the tool runs on regardless).
    pub fn sample(&mut self) {
        if Instant::now() < self.next_read {
            return;
        }
        self.next_read = Instant::now() + READ_EVERY;
        if !self.attached {
            if let Ok(found) = attached_programs(&self.interface) {
                let listed: Vec<u32> = found.keys().copied().collect();
                self.attached = !listed.is_empty() && listed == self.listed;
                self.listed = listed;
                for (id, program) in found {
                    self.programs.entry(id).or_insert(program);
                }
            }
        }
        for info in loaded_programs().flatten() {
            if let Some(program) = self.programs.get_mut(&info.id()) {
                program.read(&info);
            }
        }
        for (attach_type, hook) in [
            (TcAttachType::Egress, "tcx/egress"),
            (TcAttachType::Ingress, "tcx/ingress"),
        ] {
            let Ok((_, infos)) = SchedClassifier::query_tcx(&self.interface, attach_type) else {
                continue;
            };
            for info in infos {
                let program = self.programs.entry(info.id()).or_insert(ProgramCost {
                    hook: hook.to_owned(),
                    runs: 0,
                    run_ns: 0,
                });
                program.read(&info);
            }
        }
    }

    /// The counters of each program at the last read, XDP first.
    pub fn finish(self) -> Vec<ProgramCost> {
        let mut programs: Vec<ProgramCost> = self.programs.into_values().collect();
        programs.sort_by_key(|p| p.hook != "xdp");
        programs
    }
}

/// The programs `bpftool net show dev <interface>` lists (XDP, and tc programs other than TCX):
/// id → hook.
fn attached_programs(interface: &str) -> Result<BTreeMap<u32, ProgramCost>> {
    let json = env::output(Command::new("bpftool").args(["-j", "net", "show", "dev", interface]))?;
    parse_net_show(&json)
}

/// bpftool's `net show` JSON: `[{"xdp": [{"mode": .., "id": N}], "tc": [{"kind": "tcx/egress",
/// "prog_id": N}, {"kind": "clsact/egress", "id": N}]}]` (tcx entries name the program
/// `prog_id`, the others `id`).
fn parse_net_show(json: &str) -> Result<BTreeMap<u32, ProgramCost>> {
    let value: serde_json::Value =
        serde_json::from_str(json).context("parsing `bpftool -j net show`")?;
    let mut programs = BTreeMap::new();
    for device in value.as_array().into_iter().flatten() {
        let hooks = [("xdp", &device["xdp"]), ("tc", &device["tc"])];
        for (kind, entries) in hooks {
            for entry in entries.as_array().into_iter().flatten() {
                let id = entry["prog_id"].as_u64().or_else(|| entry["id"].as_u64());
                let Some(id) = id.and_then(|id| u32::try_from(id).ok()) else {
                    continue;
                };
                let hook = match kind {
                    "xdp" => "xdp".to_owned(),
                    _ => entry["kind"].as_str().unwrap_or("tc").to_owned(),
                };
                programs.insert(
                    id,
                    ProgramCost {
                        hook,
                        runs: 0,
                        run_ns: 0,
                    },
                );
            }
        }
    }
    Ok(programs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_show_names_xdp_and_tc_programs_by_id() {
        let json = r#"[{"xdp":[{"devname":"prbh1x0","ifindex":9,"mode":"driver","id":41}],
            "tc":[{"devname":"prbh1x0","ifindex":9,"kind":"tcx/egress","name":"prober_egress","prog_id":42,"link_id":7},
                  {"devname":"prbh1x0","ifindex":9,"kind":"clsact/ingress","name":"other","id":43}],
            "flow_dissector":[]}]"#;
        let programs = parse_net_show(json).unwrap();
        let hooks: Vec<(u32, &str)> = programs
            .iter()
            .map(|(id, p)| (*id, p.hook.as_str()))
            .collect();
        assert_eq!(
            hooks,
            [(41, "xdp"), (42, "tcx/egress"), (43, "clsact/ingress")]
        );
        let none = parse_net_show(r#"[{"xdp":[],"tc":[],"flow_dissector":[]}]"#).unwrap();
        assert!(none.is_empty());
        assert!(parse_net_show("not json").is_err());
    }

    #[test]
    fn cost_per_run() {
        let xdp = ProgramCost {
            hook: "xdp".to_owned(),
            runs: 4,
            run_ns: 1000,
        };
        assert_eq!(xdp.to_string(), "xdp 4 runs x 250 ns");
    }
}
