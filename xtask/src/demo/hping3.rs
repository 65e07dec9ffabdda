//! `cargo xtask demo --hping3`: each case the compatibility promise covers, typed to hping3 and
//! then to prober against the same namespace host one router away, so that anyone can read the
//! two outputs side by side.

use std::process::{Command, Stdio};

use anyhow::{Context as _, Result};
use prober_tests::TestHost;

use crate::env;

/// Ports of the target host: open (a listener on each), closed, and rejected by nftables with
/// ICMP admin-prohibited.
const OPEN: [u16; 3] = [80, 81, 82];
const CLOSED: u16 = 79;
const PROHIBITED: u16 = 25;

/// (what the case shows, the arguments before the target)
const CASES: &[(&str, &[&str])] = &[
    ("an open port", &["-S", "-p", "80", "-c", "2"]),
    ("a closed port", &["-S", "-p", "79", "-c", "2"]),
    (
        "a port rejected with admin-prohibited",
        &["-S", "-p", "25", "-c", "2"],
    ),
    (
        "100 data bytes",
        &["-S", "-p", "80", "-c", "2", "-d", "100"],
    ),
    ("TOS 0x10", &["-S", "-p", "80", "-c", "2", "-o", "0x10"]),
    (
        "the port counting up on each reply",
        &["-S", "-p", "+80", "-c", "3"],
    ),
    ("ICMP echo", &["-1", "-c", "2"]),
    ("UDP to a closed port", &["-2", "-p", "53", "-c", "2"]),
    (
        "ICMP echo with TTL 1: the router's time exceeded",
        &["-1", "-t", "1", "-c", "2"],
    ),
    (
        "traceroute to an open port",
        &["-T", "-S", "-p", "80", "-c", "3"],
    ),
    (
        "UDP traceroute to a closed port",
        &["-T", "-2", "-p", "53", "-c", "3"],
    ),
    (
        "the remote's sequence numbers",
        &["-Q", "-S", "-p", "80", "-c", "3"],
    ),
    (
        "TCP timestamps: the remote's tick and uptime",
        &["--tcp-timestamp", "-S", "-p", "80", "-c", "3", "-i", "1"],
    ),
    (
        "fragments of 16 bytes",
        &["-f", "-S", "-p", "80", "-c", "2", "-d", "40"],
    ),
    ("ICMP timestamp requests", &["--icmp-ts", "-c", "2"]),
    (
        "raw IP of an unknown protocol",
        &["-0", "-H", "200", "-c", "2"],
    ),
    (
        "FIN to an open and a closed port",
        &["-F", "-p", "+79", "-c", "2"],
    ),
    ("scan mode", &["-8", "24,26,79-82", "-S"]),
    ("FIN scan", &["-8", "79-82", "-F", "-V"]),
];

pub fn run(prober: &std::path::Path) -> Result<()> {
    let router = TestHost::new().context("creating the router host")?;
    let mut host = TestHost::behind(&router).context("creating the target host")?;
    for port in OPEN {
        host.listen_tcp(port)
            .with_context(|| format!("listening on TCP port {port}"))?;
    }
    host.reject_tcp_port(PROHIBITED, "admin-prohibited")?;
    let target = host.addr.to_string();
    println!(
        "Target {target}, one router ({}) away: TCP {OPEN:?} open, {CLOSED} closed, {PROHIBITED} rejected (admin-prohibited).",
        router.addr
    );
    // Shorter waits than hping3's second between probes; the lines are the same.
    let interval = ["-i", "u300000"];
    for (what, args) in CASES {
        if env::interrupted() {
            break;
        }
        println!("\n=== {what} ===");
        // A later -i (hping3's last one counts) and a scan have their own pace.
        let paced = if args.contains(&"-i") || args.contains(&"-8") {
            &[][..]
        } else {
            &interval[..]
        };
        let hping3 = [&["-n"][..], paced, args, &[&target]].concat();
        let prober_args = [paced, args, &[&target]].concat();
        // hping3's lines are stdio's, held back in a pipe until it exits, after its footer.
        let mut line_buffered = Command::new("stdbuf");
        line_buffered
            .arg("-oL")
            .arg(prober_tests::hping3_bin())
            .args(&hping3);
        show("hping3", &hping3, &mut line_buffered)?;
        show(
            "prober",
            &prober_args,
            Command::new(prober).args(&prober_args),
        )?;
    }
    Ok(())
}

/// Runs `cmd`, shown as `name args` as a user types it, and says how it ended.
fn show(name: &str, args: &[&str], cmd: &mut Command) -> Result<()> {
    println!("\n$ {name} {}", args.join(" "));
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {name}"))?;
    println!("[exit status {}]", status.code().unwrap_or(-1));
    Ok(())
}
