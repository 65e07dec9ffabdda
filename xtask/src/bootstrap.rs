//! `cargo xtask bootstrap`: installs what the build and the tests need, checking first, so a
//! run on a machine that has everything installs nothing and takes seconds.
//!
//! - apt packages: present when `dpkg-query` reports `install ok installed`;
//! - the eBPF toolchain pinned in prober-ebpf/rust-toolchain.toml: present when
//!   `rustup run <channel> rustc --version` works and rust-src is among its installed components;
//! - bpf-linker: present when `$CARGO_HOME/bin/bpf-linker --version` works and names the pinned version.

use std::process::Command;

use anyhow::{bail, Context as _, Result};

use crate::env;

/// Build: LLVM 22 development files for bpf-linker.
const BUILD_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "libxml2-dev",
];
/// Tests: hping3 (reference peer), nft, ip and ss, ethtool, bpftool, setpriv, setcap, tmux (a
/// terminal for the status line's tests), masscan (the list format's reference), Prometheus (the
/// server that scrapes the exporter's tests) and smokeping_prober (the exporter's peer); the
/// tests start both themselves, on loopback ports.
const TEST_PACKAGES: &[&str] = &[
    "hping3",
    "nftables",
    "iproute2",
    "ethtool",
    "bpftool",
    "util-linux",
    "libcap2-bin",
    "tmux",
    "masscan",
    "prometheus",
    "prometheus-smokeping-prober",
];
/// 0.13.0 defaults to LLVM 23; it is built with the llvm-22 feature to match the eBPF rustc.
const BPF_LINKER_VERSION: &str = "0.13.0";
const TOOLCHAIN_FILE: &str = "prober-ebpf/rust-toolchain.toml";

pub fn run() -> Result<()> {
    let mut installed = Vec::new();

    let packages: Vec<&str> = BUILD_PACKAGES
        .iter()
        .chain(TEST_PACKAGES)
        .copied()
        .collect();
    let missing = missing_packages(&packages)?;
    if !missing.is_empty() {
        install_packages(&missing)?;
        let still = missing_packages(&missing)?;
        if !still.is_empty() {
            bail!(
                "apt-get install ran but these are still not installed: {}",
                still.join(" ")
            );
        }
        installed.push(format!("apt: {}", missing.join(" ")));
    }

    let channel = ebpf_channel()?;
    if !toolchain_ready(&channel)? {
        env::run(env::command("rustup")?.args([
            "toolchain",
            "install",
            &channel,
            "--profile",
            "minimal",
            "--component",
            "rust-src",
            "--no-self-update",
        ]))?;
        if !toolchain_ready(&channel)? {
            bail!("rustup installed {channel} but it still lacks rustc or rust-src");
        }
        installed.push(format!("toolchain {channel} with rust-src"));
    }

    if !bpf_linker_ready()? {
        env::run(&mut env::cargo([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--no-default-features",
            "--features",
            "llvm-22",
            "--locked",
        ])?)?;
        if !bpf_linker_ready()? {
            bail!("cargo installed bpf-linker but `bpf-linker --version` still does not report {BPF_LINKER_VERSION}");
        }
        installed.push(format!("bpf-linker {BPF_LINKER_VERSION}"));
    }

    if installed.is_empty() {
        eprintln!("xtask: bootstrap: all present ({} apt packages, {channel} with rust-src, bpf-linker {BPF_LINKER_VERSION})", packages.len());
    } else {
        eprintln!("xtask: bootstrap: installed {}", installed.join("; "));
    }
    Ok(())
}

/// The packages among `packages` that dpkg does not report as installed.
pub fn missing_packages<'a>(packages: &[&'a str]) -> Result<Vec<&'a str>> {
    // dpkg-query exits 1 when a package is unknown to it; that one is simply not listed.
    let out = Command::new("dpkg-query")
        .arg("-W")
        .arg("-f=${Package}\t${Status}\n")
        .args(packages)
        .output()
        .context("cannot run dpkg-query (bootstrap supports Debian-like systems)")?;
    let listing = String::from_utf8_lossy(&out.stdout);
    Ok(packages
        .iter()
        .copied()
        .filter(|p| !is_installed(&listing, p))
        .collect())
}

/// Whether `dpkg-query -W -f='${Package}\t${Status}\n'` output shows `package` installed.
fn is_installed(listing: &str, package: &str) -> bool {
    listing
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .any(|(name, status)| name == package && status.trim() == "install ok installed")
}

pub fn install_packages(packages: &[&str]) -> Result<()> {
    if !env::is_root() {
        bail!(
            "missing apt packages ({}); installing them needs root",
            packages.join(" ")
        );
    }
    eprintln!("xtask: bootstrap: installing {}", packages.join(" "));
    env::run(
        Command::new("apt-get")
            .args(["update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(std::process::Stdio::null()),
    )?;
    env::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q"])
            .args([
                "-o",
                "Dpkg::Options::=--force-confdef",
                "-o",
                "Dpkg::Options::=--force-confold",
            ])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(std::process::Stdio::null()),
    )
}

/// The `channel = "..."` of prober-ebpf/rust-toolchain.toml.
pub fn ebpf_channel() -> Result<String> {
    let path = env::workspace_root().join(TOOLCHAIN_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_channel(&text)
        .with_context(|| format!("no `channel = \"...\"` line in {}", path.display()))
}

fn parse_channel(toml: &str) -> Option<String> {
    toml.lines().find_map(|line| {
        let value = line
            .trim()
            .strip_prefix("channel")?
            .trim_start()
            .strip_prefix('=')?;
        let value = value.trim().strip_prefix('"')?;
        let (channel, _) = value.split_once('"')?;
        (!channel.is_empty()).then(|| channel.to_owned())
    })
}

fn toolchain_ready(channel: &str) -> Result<bool> {
    // RUSTUP_AUTO_INSTALL=0: a check must not install (the install below says what it does).
    let rustc_works = env::succeeds(
        env::command("rustup")?
            .args(["run", channel, "rustc", "--version"])
            .env("RUSTUP_AUTO_INSTALL", "0"),
    );
    if !rustc_works {
        return Ok(false);
    }
    let components = env::command("rustup")?
        .args(["component", "list", "--toolchain", channel, "--installed"])
        .env("RUSTUP_AUTO_INSTALL", "0")
        .output();
    Ok(components.is_ok_and(|out| {
        out.status.success()
            && String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|c| c.trim().starts_with("rust-src"))
    }))
}

fn bpf_linker_ready() -> Result<bool> {
    let out = Command::new(env::cargo_bin_dir()?.join("bpf-linker"))
        .arg("--version")
        .output();
    Ok(out.is_ok_and(|out| {
        out.status.success()
            && String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .any(|word| word == BPF_LINKER_VERSION)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_is_read_from_the_pin() {
        let pin = "# comment\n[toolchain]\nchannel = \"nightly-2026-07-01\"\ncomponents = [\"rust-src\"]\n";
        assert_eq!(parse_channel(pin).as_deref(), Some("nightly-2026-07-01"));
        assert_eq!(
            parse_channel("channel=\"stable\"").as_deref(),
            Some("stable")
        );
        assert_eq!(parse_channel("[toolchain]\nprofile = \"minimal\"\n"), None);
        assert_eq!(parse_channel("channels = \"x\"\n").as_deref(), None);
    }

    #[test]
    fn installed_means_install_ok_installed() {
        let listing = "hping3\tinstall ok installed\nbpftool\tdeinstall ok config-files\n";
        assert!(is_installed(listing, "hping3"));
        assert!(!is_installed(listing, "bpftool"));
        assert!(!is_installed(listing, "nftables"));
    }
}
