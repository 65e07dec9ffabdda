//! Builds the XDP program with the pinned eBPF toolchain (prober-ebpf/rust-toolchain.toml)
//! and bpf-linker; the binary embeds it from OUT_DIR.
use anyhow::{anyhow, Context as _};

fn main() -> anyhow::Result<()> {
    let ebpf_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../prober-ebpf");
    let toolchain_file = format!("{ebpf_dir}/rust-toolchain.toml");
    println!("cargo:rerun-if-changed={toolchain_file}");
    let pin = std::fs::read_to_string(&toolchain_file).context("reading the eBPF toolchain pin")?;
    let channel = pin
        .lines()
        .find_map(|line| line.trim().strip_prefix("channel = "))
        .map(|value| value.trim_matches('"'))
        .ok_or_else(|| anyhow!("no `channel = ` line in {toolchain_file}"))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "prober-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(channel),
    )
}
