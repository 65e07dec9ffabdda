//! What a sweep probes and in which order: every (host, port) of the targets, numbered hosts
//! major and ports minor, visited in a keyed random order; this machine's shard of that order,
//! split between the send threads, each with its own block of source ports; and, for a
//! reply, which probe it answers.
use std::net::IpAddr;

use super::{permutation::Permutation, ports::PortList, targets::TargetSet};

/// Source ports a sweep uses: `base_port .. base_port + SOURCE_PORTS`. A reply's destination
/// port and its target name the probe it answers (see [`Plan::walk_index`]).
pub const SOURCE_PORTS: u16 = prober_common::SWEEP_SOURCE_PORTS;
/// Above Linux's default ephemeral range (32768–60999), so the host's own connections
/// never share a port with the sweep.
pub const DEFAULT_BASE_PORT: u16 = 61440;

/// This machine's part of a sweep split over `count` machines (zmap's and masscan's shards).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// 0-based.
    pub index: u64,
    pub count: u64,
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };
}

/// Where a probe leaves from: its source port, and the epoch that numbers its departure slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendSlot {
    pub source_port: u16,
    pub epoch: u16,
}

pub struct Plan {
    pub targets: TargetSet,
    pub ports: PortList,
    permutation: Permutation,
    shard: Shard,
    /// Send threads; sender j takes every `senders`-th of this shard's positions from the j-th,
    /// and source ports from its own block of `SOURCE_PORTS / senders`.
    pub senders: u64,
    pub base_port: u16,
}

impl Plan {
    /// `order_key` picks the order; every machine of a sharded sweep must use the same one.
    pub fn new(
        targets: TargetSet,
        ports: PortList,
        shard: Shard,
        senders: u64,
        base_port: u16,
        order_key: [u64; 2],
    ) -> Plan {
        let total = targets.len() * ports.len();
        Plan {
            targets,
            ports,
            permutation: Permutation::new(total, order_key),
            shard,
            senders,
            base_port,
        }
    }

    /// Positions in the whole order (all shards).
    pub fn len(&self) -> u64 {
        self.permutation.len()
    }

    /// Probes in one full pass of this shard.
    pub fn probes_in_first_pass(&self) -> u64 {
        self.len()
            .saturating_sub(self.shard.index)
            .div_ceil(self.shard.count)
    }

    /// The target (hosts major, ports minor) at `position` of the order.
    pub fn target_at(&self, position: u64) -> u64 {
        self.permutation.get(position)
    }

    /// The (host, port) of target number `target`.
    pub fn endpoint(&self, target: u64) -> (IpAddr, u16) {
        let ports = self.ports.len();
        (
            self.targets.get(target / ports),
            self.ports.get(target % ports),
        )
    }

    /// The number of the target `ip:port`, if the sweep has it.
    pub fn target_of(&self, ip: IpAddr, port: u16) -> Option<u64> {
        Some(self.targets.index(ip)? * self.ports.len() + self.ports.index(port)?)
    }

    /// The first position of sender `sender`, and the step between its positions.
    pub fn walk(&self, sender: u64) -> (u64, u64) {
        let step = self.shard.count * self.senders;
        (self.shard.index + sender * self.shard.count, step)
    }

    /// Sender `sender`'s positions before `reached`, in order.
    pub fn positions_before(&self, sender: u64, reached: u64) -> impl Iterator<Item = u64> {
        let (first, step) = self.walk(sender);
        (first..reached.min(self.len())).step_by(step as usize)
    }

    /// How many positions [`Plan::positions_before`] gives, without walking them.
    pub fn count_before(&self, sender: u64, reached: u64) -> u64 {
        let (first, step) = self.walk(sender);
        reached.min(self.len()).saturating_sub(first).div_ceil(step)
    }

    /// Where sender `sender`'s probe at `index` of its walk (the index-th of its positions)
    /// leaves from in pass `pass`. Its probes are numbered in send order, pass after pass, a
    /// number for every position whether a retry skips it or not, so that the reply's side can
    /// tell the number from the target: the number counts through the sender's source ports,
    /// and then an epoch up.
    pub fn send_slot(&self, sender: u64, pass: u32, index: u64) -> SendSlot {
        let (first_port, ports) = self.source_ports(sender);
        let number = u64::from(pass) * self.count_before(sender, u64::MAX) + index;
        SendSlot {
            source_port: first_port + (number % u64::from(ports)) as u16,
            epoch: (number / u64::from(ports)) as u16,
        }
    }

    /// Which sender's walk has `target`, and at which index of it (what [`Plan::send_slot`]
    /// takes); None when it is another shard's.
    pub fn walk_index(&self, target: u64) -> Option<(u64, u64)> {
        let position = self.permutation.position_of(target);
        // This shard's positions are index + k * count; sender j has every senders-th of them.
        let offset = position.checked_sub(self.shard.index)?;
        let ordinal = (offset % self.shard.count == 0).then_some(offset / self.shard.count)?;
        Some((ordinal % self.senders, ordinal / self.senders))
    }

    /// Sender `sender`'s source ports: the first, and how many.
    pub fn source_ports(&self, sender: u64) -> (u16, u16) {
        let per_sender = SOURCE_PORTS / self.senders as u16;
        (self.base_port + sender as u16 * per_sender, per_sender)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn plan(hosts: &str, ports: &str, shard: Shard, senders: u64) -> Plan {
        Plan::new(
            TargetSet::new(&[hosts.to_string()], &[], None).unwrap(),
            PortList::parse(ports).unwrap(),
            shard,
            senders,
            DEFAULT_BASE_PORT,
            [3, 4],
        )
    }

    /// Every target the senders of `plan` reach in a full pass.
    fn reached(plan: &Plan) -> Vec<u64> {
        (0..plan.senders)
            .flat_map(|sender| {
                plan.positions_before(sender, u64::MAX)
                    .map(|position| plan.target_at(position))
            })
            .collect()
    }

    #[test]
    fn the_senders_of_a_pass_reach_every_target_once() {
        let plan = plan("198.18.4.0/30", "1-1000", Shard::WHOLE, 3);
        let targets = reached(&plan);
        assert_eq!(targets.len(), 4000);
        assert_eq!(targets.iter().collect::<HashSet<_>>().len(), 4000);
        assert_eq!(plan.probes_in_first_pass(), 4000);
        let endpoints: HashSet<(IpAddr, u16)> = targets
            .iter()
            .map(|&target| plan.endpoint(target))
            .collect();
        assert!(endpoints.contains(&("198.18.4.3".parse().unwrap(), 1000)));
        for &target in &targets {
            let (ip, port) = plan.endpoint(target);
            assert_eq!(plan.target_of(ip, port), Some(target));
        }
        assert_eq!(plan.target_of("198.18.4.4".parse().unwrap(), 1), None);
        assert_eq!(plan.target_of("198.18.4.3".parse().unwrap(), 1001), None);
    }

    #[test]
    fn shards_split_the_order_exactly() {
        let shards: Vec<Vec<u64>> = (0..3)
            .map(|index| {
                reached(&plan(
                    "198.18.4.0/29",
                    "1-999",
                    Shard { index, count: 3 },
                    2,
                ))
            })
            .collect();
        let all: Vec<u64> = shards.concat();
        assert_eq!(all.len(), 8 * 999);
        assert_eq!(
            all.iter().collect::<HashSet<_>>().len(),
            8 * 999,
            "no overlap"
        );
        for (index, shard) in shards.iter().enumerate() {
            let expected = plan(
                "198.18.4.0/29",
                "1-999",
                Shard {
                    index: index as u64,
                    count: 3,
                },
                2,
            )
            .probes_in_first_pass();
            assert_eq!(shard.len() as u64, expected, "shard {index}");
        }
    }

    #[test]
    fn counting_positions_agrees_with_walking_them() {
        let plan = plan("198.18.4.0/30", "1-250", Shard { index: 1, count: 2 }, 3);
        for sender in 0..3 {
            for reached in [0, 1, 2, 7, 8, 9, 500, 999, 1000, u64::MAX] {
                assert_eq!(
                    plan.count_before(sender, reached),
                    plan.positions_before(sender, reached).count() as u64,
                    "sender {sender}, reached {reached}"
                );
            }
        }
    }

    #[test]
    fn each_sender_has_its_own_block_of_source_ports() {
        let plan = plan("198.18.4.1", "80", Shard::WHOLE, 4);
        let blocks: Vec<(u16, u16)> = (0..4).map(|sender| plan.source_ports(sender)).collect();
        assert_eq!(
            blocks,
            [(61440, 1024), (62464, 1024), (63488, 1024), (64512, 1024)]
        );
        let last = blocks[3].0 + (blocks[3].1 - 1);
        assert_eq!(
            last,
            DEFAULT_BASE_PORT + (SOURCE_PORTS - 1),
            "the blocks fill the range"
        );
        assert_eq!(
            plan_with_senders(3).source_ports(2),
            (61440 + 2 * 1365, 1365),
            "an uneven split leaves the top unused, never beyond it"
        );
    }

    #[test]
    fn a_target_names_its_probes_in_every_pass() {
        // 3 senders of 1365 ports each, 2 of 3 shards, 2 passes: 1000 ports of 4 hosts.
        let plan = plan("198.18.4.0/30", "1-1000", Shard { index: 1, count: 3 }, 3);
        let mut slots = HashSet::new();
        for sender in 0..3 {
            for (index, position) in plan.positions_before(sender, u64::MAX).enumerate() {
                let index = index as u64;
                assert_eq!(
                    plan.walk_index(plan.target_at(position)),
                    Some((sender, index))
                );
                for pass in 0..2 {
                    let slot = plan.send_slot(sender, pass, index);
                    assert!(
                        slots.insert((slot.source_port, slot.epoch)),
                        "{slot:?} twice"
                    );
                    let (first, ports) = plan.source_ports(sender);
                    assert!((first..first + ports).contains(&slot.source_port));
                }
            }
        }
        assert_eq!(plan.walk_index(plan.target_at(0)), None, "shard 0's");
    }

    fn plan_with_senders(senders: u64) -> Plan {
        plan("198.18.4.1", "80", Shard::WHOLE, senders)
    }
}
