//! Builds the eBPF programs with the pinned eBPF toolchain (prober-ebpf/rust-toolchain.toml)
//! and bpf-linker; the binary embeds them from OUT_DIR.
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
    // aya-build relays everything the inner cargo prints on stderr as `warning:` lines, so its
    // progress ("Compiling core ...") looks like fifty warnings. Quiet, that cargo prints only
    // errors there; the compiler's own warnings and errors still come through, as aya-build
    // renders them from cargo's JSON messages. The inner cargo inherits this environment.
    std::env::set_var("CARGO_TERM_QUIET", "true");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "prober-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(channel),
    )
}
