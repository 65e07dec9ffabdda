//! The XDP program's per-CPU counters.
use anyhow::{Context as _, Result};
use aya::maps::{MapData, PerCpuArray};
use prober_common::Counter;

use crate::reading::Reading;

pub struct Counters(PerCpuArray<MapData, u64>);

impl Counters {
    pub fn new(map: PerCpuArray<MapData, u64>) -> Counters {
        Counters(map)
    }

    /// A counter summed over all CPUs.
    pub fn get(&self, counter: Counter) -> Result<u64> {
        let values = self
            .0
            .get(&(counter as u32), 0)
            .with_context(|| format!("reading the XDP program's {counter:?} counter"))?;
        Ok(values.iter().sum())
    }

    /// The same, as a footer reports it.
    pub fn read(&self, counter: Counter) -> Reading {
        Reading::of(self.get(counter))
    }
}
