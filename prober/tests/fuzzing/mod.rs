//! What the fuzz targets (`tests/fuzz_*.rs`) share. Each target is a `bolero::check!()` harness
//! that asserts properties of what it feeds, not only that nothing panics:
//!
//! - `fuzz_replies`: ring-buffer bytes → `ReplyRecord` → each probe kind's reading of it → every
//!   output format (hping3's reply line; the sweep's table, JSON, CSV and list).
//! - `fuzz_ports`: port specifications (`-p`, `--scan`).
//! - `fuzz_targets`: target sets of either family, addresses and CIDR blocks minus exclusions.
//! - `fuzz_exclude_file`: the `--exclude-file` reader.
//! - `fuzz_xdp_parse`: the XDP programs' packet parsing and validation (`prober_common::wire`,
//!   compiled for the host).
//!
//! Under `cargo test` a target runs random inputs for [`CI_TIME`] (and replays the corpus and
//! crashes `cargo bolero test` saved under `tests/__fuzz__/`); `cargo bolero test` runs it under
//! libFuzzer until stopped (see README.md).

use std::time::Duration;

/// How long each target runs under `cargo test`: long enough for some thousands of inputs in a
/// debug build, short enough for every run of the suite.
pub const CI_TIME: Duration = Duration::from_secs(3);
