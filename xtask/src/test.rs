//! `cargo xtask test`: the whole suite as root, then a check that it left nothing behind.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

use crate::{bootstrap, env};

pub fn run() -> Result<()> {
    // Privileged tests must fail, not skip: refuse to run them half.
    env::require_root("cargo xtask test")?;
    bootstrap::run()?;
    // Ctrl-C stops the suite (cargo and the tests get it from the terminal) but not the
    // leftover check below.
    env::catch_sigint()?;
    env::build_prober(false)?;
    let prober = env::prober_bin(false)?;

    // prober-ebpf only builds for bpfel-unknown-none (prober's build.rs builds it); on the host
    // it fails, so --workspace leaves it out. --no-fail-fast: every failure in one CI log.
    let mut cmd = env::cargo([
        "test",
        "--workspace",
        "--exclude",
        "prober-ebpf",
        "--no-fail-fast",
    ])?;
    cmd.env("PROBER_BIN", &prober);
    // For the suite's duration: a test whose veth is gone must meet "no route", not the uplink.
    let safety_net = prober_tests::SafetyNet::install()?;
    let suite = run_counting(&mut cmd);
    drop(safety_net);

    let leftovers = leftovers()?;
    if !leftovers.is_empty() {
        eprintln!("xtask: the suite left these behind:");
        for item in &leftovers {
            eprintln!("xtask:   {item}");
        }
    }
    match (suite, leftovers.len()) {
        (Err(err), 0) => Err(err),
        (Err(err), n) => bail!("{err:#}; and {n} leftover(s), listed above"),
        (Ok(()), 0) if env::interrupted() => bail!("interrupted"),
        (Ok(()), 0) => Ok(()),
        (Ok(()), n) => bail!("the suite passed but left {n} leftover(s), listed above"),
    }
}

/// Runs `cargo test`, passing its output through, and ends with one total over every test
/// binary: cargo's own last line is often a doc-test run of 0 tests, which says nothing.
fn run_counting(cmd: &mut Command) -> Result<()> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run `{}`", env::display(cmd)))?;
    let stdout = child.stdout.take().context("cargo test's stdout")?;
    let (mut passed, mut failed) = (0, 0);
    // Read lossily and to the end, so that cargo test is always waited for.
    let mut reader = BufReader::new(stdout);
    let mut bytes = Vec::new();
    while reader.read_until(b'\n', &mut bytes).unwrap_or(0) > 0 {
        let line = String::from_utf8_lossy(&bytes);
        let line = line.trim_end_matches('\n');
        println!("{line}");
        if let Some((p, f)) = result_counts(line) {
            passed += p;
            failed += f;
        }
        bytes.clear();
    }
    let status = child.wait().context("waiting for cargo test")?;
    println!("tests: {passed} passed, {failed} failed");
    if !status.success() {
        bail!("`{}` failed ({status})", env::display(cmd));
    }
    Ok(())
}

/// The passed and failed counts of a libtest summary line
/// (`test result: ok. 3 passed; 0 failed; 0 ignored; ...`).
fn result_counts(line: &str) -> Option<(u64, u64)> {
    let counts = line.strip_prefix("test result: ")?.split_once(". ")?.1;
    let count = |word: &str| {
        counts
            .split("; ")
            .find_map(|part| part.strip_suffix(word)?.trim().parse::<u64>().ok())
    };
    Some((count(" passed")?, count(" failed")?))
}

/// Namespaces named `prb-*`, `prb*` interfaces with an XDP program, in the root namespace,
/// and prober's BPF programs still loaded (its TC egress link does not show on interfaces).
fn leftovers() -> Result<Vec<String>> {
    let netns = env::output(env::command("ip")?.args(["netns", "list"]))?;
    let links = env::output(env::command("ip")?.args(["-o", "link"]))?;
    let programs = env::output(env::command("bpftool")?.args(["prog", "show"]))?;
    let mut routes = String::new();
    for family in ["-4", "-6"] {
        routes +=
            &env::output(env::command("ip")?.args([family, "route", "show", "table", "all"]))?;
    }
    Ok(test_namespaces(&netns)
        .into_iter()
        .map(|ns| format!("network namespace {ns}"))
        .chain(
            xdp_links(&links)
                .into_iter()
                .map(|l| format!("XDP program on interface {l}")),
        )
        .chain(
            prober_programs(&programs)
                .into_iter()
                .map(|p| format!("BPF program {p} still loaded")),
        )
        .chain(
            test_routes(&routes)
                .into_iter()
                .map(|r| format!("route {r}")),
        )
        .collect())
}

/// Routes into the testbed's part of 198.18.0.0/15 (198.18.4.0 on) or into 2001:db8::/32 (the
/// safety net's /15 and /32 themselves are not ones) in `ip -4`/`ip -6 route show table all`
/// output: a test that routed a block somewhere and did not take the route away again, or a
/// test veth's address left behind.
fn test_routes(listing: &str) -> Vec<&str> {
    const FIRST: u32 = u32::from_be_bytes([198, 18, 4, 0]);
    const END: u32 = u32::from_be_bytes([198, 20, 0, 0]);
    const DOCUMENTATION: u128 = 0x2001_0db8 << 96;
    listing
        .lines()
        .filter(|line| {
            let mut words = line.split_whitespace();
            let Some(mut prefix) = words.next() else {
                return false;
            };
            if !prefix.starts_with(|c: char| c.is_ascii_digit()) {
                prefix = words.next().unwrap_or(""); // a route type: local, unreachable...
            }
            let (address, length) = prefix.split_once('/').unwrap_or((prefix, "128"));
            let (Ok(address), Ok(length)) = (address.parse(), length.parse::<u8>()) else {
                return false;
            };
            match address {
                std::net::IpAddr::V4(v4) => length > 15 && (FIRST..END).contains(&u32::from(v4)),
                std::net::IpAddr::V6(v6) => {
                    length > 32 && u128::from(v6) >> 96 == DOCUMENTATION >> 96
                }
            }
        })
        .collect()
}

/// prober's programs (`prober`, `prober_egress`) in `bpftool prog show` output, as
/// `<name> (id <id>)`.
fn prober_programs(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|line| {
            let (id, rest) = line.split_once(':')?;
            let mut words = rest.split_whitespace();
            let name = words.by_ref().skip_while(|w| *w != "name").nth(1)?;
            matches!(name, "prober" | "prober_egress" | "prober_ingress")
                .then(|| format!("{name} (id {})", id.trim()))
        })
        .collect()
}

/// Names in `ip netns list` output (`name` or `name (id: N)`) that start with `prb-`.
fn test_namespaces(listing: &str) -> Vec<&str> {
    listing
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with("prb-"))
        .collect()
}

/// Interfaces in `ip -o link` output named `lo` or `prb*` that show an XDP
/// program (`xdp`, `xdpgeneric`, `xdpoffload` or `xdpmulti`; `prog/xdp` with -details).
fn xdp_links(listing: &str) -> Vec<&str> {
    listing
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace().skip(1); // "N:"
            let name = words.next()?.trim_end_matches(':');
            let name = name.split_once('@').map_or(name, |(name, _peer)| name);
            let xdp = words.any(|w| w.starts_with("xdp") || w.starts_with("prog/xdp"));
            // `lo` too: the loopback tests attach there, in the root namespace.
            ((name.starts_with("prb") || name == "lo") && xdp).then_some(name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libtest_summaries() {
        let line = "test result: FAILED. 9 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.48s";
        assert_eq!(result_counts(line), Some((9, 2)));
        assert_eq!(result_counts("running 3 tests"), None);
    }

    #[test]
    fn finds_prober_programs() {
        let listing = "3812: xdp  name prober  tag 8801da506ae366b9  gpl\n\
                       \tloaded_at 2026-11-24T19:33:02+0000  uid 0\n\
                       3813: sched_cls  name prober_egress  tag 1234  gpl\n\
                       3900: tracing  name other  tag 99\n";
        assert_eq!(
            prober_programs(listing),
            ["prober (id 3812)", "prober_egress (id 3813)"]
        );
    }

    #[test]
    fn finds_routes_into_the_testbed_range() {
        let listing = "default via 192.0.2.1 dev eth0\n\
                       unreachable 198.18.0.0/15\n\
                       198.18.1.0/24 dev eth1 proto kernel scope link src 198.18.1.1\n\
                       198.19.20.0/29 via 198.18.7.2 dev prbh1 metric 1000\n\
                       local 198.18.7.1 dev prbh1 table local proto kernel scope host src 198.18.7.1\n\
                       unreachable 2001:db8::/32 dev lo metric 1024 pref medium\n\
                       2001:db8:102:4a0::/120 via 2001:db8:100:4a0::2 dev prbh1 metric 1024 pref medium\n\
                       local 2001:db8:100:4a0::1 dev prbh1 table local proto kernel metric 0 pref medium\n\
                       fe80::/64 dev eth0 proto kernel metric 256 pref medium\n";
        assert_eq!(
            test_routes(listing),
            [
                "198.19.20.0/29 via 198.18.7.2 dev prbh1 metric 1000",
                "local 198.18.7.1 dev prbh1 table local proto kernel scope host src 198.18.7.1",
                "2001:db8:102:4a0::/120 via 2001:db8:100:4a0::2 dev prbh1 metric 1024 pref medium",
                "local 2001:db8:100:4a0::1 dev prbh1 table local proto kernel metric 0 pref medium"
            ]
        );
    }

    #[test]
    fn finds_test_namespaces() {
        let listing = "prb-1234-0 (id: 3)\nprbt0 (id: 0)\nother\nprb-x\n";
        assert_eq!(test_namespaces(listing), ["prb-1234-0", "prb-x"]);
    }

    #[test]
    fn finds_prb_links_with_xdp() {
        // As printed by iproute2 on Debian 12 (driver and generic mode), and one without XDP.
        let listing = "\
1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 xdpgeneric qdisc noqueue state UNKNOWN mode DEFAULT\\    link/loopback 00:00:00:00:00:00
2: prbxdp1@prbxdp0: <BROADCAST,MULTICAST> mtu 1500 xdp qdisc noop state DOWN mode DEFAULT group default qlen 1000\\    link/ether 82:15:29:ce:00:01
3: prbxdp0@prbxdp1: <NO-CARRIER,BROADCAST,MULTICAST,UP,M-DOWN> mtu 1500 xdpgeneric qdisc noqueue state LOWERLAYERDOWN\\    link/ether 82:15:29:ce:00:02
6: prbt0h@if5: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT\\    link/ether 3e:f3:b7:44:63:dd
";
        assert_eq!(xdp_links(listing), ["lo", "prbxdp1", "prbxdp0"]);
    }
}
