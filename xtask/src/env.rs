//! What every task shares: the build environment, running commands, paths, root and Ctrl-C.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context as _, Result};

/// LLVM 22's tools (llvm-config for building bpf-linker; the LLVM major must match the eBPF rustc's).
const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Where `cargo install` puts binaries: `$CARGO_HOME/bin`, by default `$HOME/.cargo/bin`.
pub fn cargo_bin_dir() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os("CARGO_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(home).join("bin"));
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".cargo/bin"))
}

/// A command run in the workspace root with the build environment: PATH prefixed by the cargo
/// bin directory (rustup's proxies, bpf-linker) and LLVM 22's bin directory. Every task that
/// runs rustup or cargo goes through here.
pub fn command(program: &str) -> Result<Command> {
    let mut dirs = vec![cargo_bin_dir()?, PathBuf::from(LLVM_BIN)];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let path: OsString = std::env::join_paths(dirs).context("building PATH")?;
    let mut cmd = Command::new(program);
    // With PATH set on the command, the program is looked up in this PATH.
    cmd.env("PATH", path)
        .current_dir(workspace_root())
        .stdin(Stdio::null());
    Ok(cmd)
}

/// `cargo ...` with the build environment.
pub fn cargo<const N: usize>(args: [&str; N]) -> Result<Command> {
    let mut cmd = command("cargo")?;
    cmd.args(args);
    Ok(cmd)
}

/// The command as a user would type it (program and arguments, no environment).
pub fn display(cmd: &Command) -> String {
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    words.join(" ")
}

/// Runs `cmd` with inherited stdout/stderr; an error unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run `{}`", display(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(cmd));
    }
    Ok(())
}

/// Runs `cmd` quietly; true if it exits 0 (false also when it cannot be started).
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `cmd` and returns its stdout if it exits 0.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run `{}`", display(cmd)))?;
    if !out.status.success() {
        bail!("`{}` failed ({})", display(cmd), out.status);
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{}` printed non-UTF-8", display(cmd)))
}

/// `cargo build -p prober [--release]`.
pub fn build_prober(release: bool) -> Result<()> {
    let mut cmd = cargo(["build", "--package", "prober"])?;
    if release {
        cmd.arg("--release");
    }
    run(&mut cmd)
}

/// The prober binary that `build_prober(release)` made, as an absolute path.
pub fn prober_bin(release: bool) -> Result<PathBuf> {
    let bin = target_dir()?
        .join(if release { "release" } else { "debug" })
        .join("prober");
    if !bin.is_file() {
        bail!("{} is missing after the build", bin.display());
    }
    Ok(bin)
}

/// `$PROBER_BIN`, when set: a prober built elsewhere, which a benchmark then runs instead of
/// building its own. An error if it names no file.
pub fn prebuilt_prober() -> Option<Result<PathBuf>> {
    let bin = PathBuf::from(std::env::var_os("PROBER_BIN").filter(|v| !v.is_empty())?);
    Some(if bin.is_file() {
        Ok(bin)
    } else {
        Err(anyhow::anyhow!("PROBER_BIN={} is no file", bin.display()))
    })
}

/// Cargo's target directory (honours CARGO_TARGET_DIR and build.target-dir), from `cargo metadata`.
pub fn target_dir() -> Result<PathBuf> {
    let json = output(&mut cargo([
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
    ])?)?;
    let meta: serde_json::Value =
        serde_json::from_str(&json).context("parsing `cargo metadata`")?;
    let dir = meta["target_directory"]
        .as_str()
        .context("`cargo metadata` has no target_directory")?;
    Ok(PathBuf::from(dir))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Refuses to go on unless running as root.
pub fn require_root(task: &str) -> Result<()> {
    if !is_root() {
        bail!("`{task}` must run as root (it creates network namespaces and loads XDP programs); run it with sudo or as root");
    }
    Ok(())
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// From now on Ctrl-C (SIGINT) only sets a flag in xtask, so that it outlives its children
/// (which get SIGINT from the terminal themselves and keep the default action: a caught
/// signal's handler is reset by exec) and can clean up after them. See `interrupted()`.
pub fn catch_sigint() -> Result<()> {
    // SAFETY: a zeroed sigaction is valid; the handler only stores to an atomic.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut()) != 0 {
            bail!("cannot catch SIGINT: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// True once Ctrl-C was pressed after `catch_sigint()`.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
