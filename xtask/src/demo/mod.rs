//! `cargo xtask demo`: prober against a throwaway namespace host with an open port (80),
//! a closed one (81), a filtered one (23), and ICMP echo; with `--hping3`, hping3 and prober
//! side by side ([`hping3`]).

mod hping3;

use std::process::{Command, Stdio};

use anyhow::{bail, Context as _, Result};

use crate::{bootstrap, env};

pub fn run(side_by_side: bool) -> Result<()> {
    env::require_root("cargo xtask demo")?;
    bootstrap::run()?;
    env::build_prober(true)?;
    let prober = env::prober_bin(true)?;
    env::catch_sigint()?;

    // Both dropped on every way out of this function, which removes the namespace and the rest;
    // while the demo runs, a missing veth means "no route", never the uplink.
    let _safety_net = prober_tests::SafetyNet::install()?;
    if side_by_side {
        return hping3::run(&prober);
    }
    let mut host = prober_tests::TestHost::new().context("creating the demo host")?;
    host.listen_tcp(80)
        .context("listening on TCP port 80 in the demo host")?;
    host.drop_tcp_port(23)
        .context("dropping TCP port 23 in the demo host")?;
    let addr = host.addr.to_string();
    println!(
        "Demo host {addr} (namespace {}, reached through {}): TCP 80 open, 81 closed, 23 filtered.",
        host.ns, host.host_if
    );

    // (arguments before the address, the exit status to expect: 1 = no reply)
    let runs: [(&[&str], i32); 4] = [
        (&["-c", "4", "-S", "-p", "80"], 0),
        (&["-c", "4", "-S", "-p", "81"], 0),
        (&["-c", "4", "-S", "-p", "23"], 1),
        (&["-1", "-c", "4"], 0),
    ];
    let mut unexpected = Vec::new();
    for (args, expected) in runs {
        if env::interrupted() {
            break;
        }
        let typed = format!("prober {} {addr}", args.join(" "));
        println!("\n$ {typed}");
        let status = Command::new(&prober)
            .args(args)
            .arg(&addr)
            .stdin(Stdio::null())
            .status()
            .with_context(|| format!("cannot run {}", prober.display()))?;
        if status.code() != Some(expected) {
            unexpected.push(format!(
                "`{typed}` {status}, expected exit status {expected}"
            ));
        }
    }
    drop(host);
    if env::interrupted() {
        bail!("interrupted (the demo host is removed)");
    }
    if !unexpected.is_empty() {
        bail!("{}", unexpected.join("; "));
    }
    Ok(())
}
