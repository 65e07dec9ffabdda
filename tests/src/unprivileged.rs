//! prober run by an ordinary user: uid and gid 65534 (`nobody`), entered with `setpriv`, on a
//! copy of the binary that this user can reach (the build tree may not be), with file
//! capabilities when a test grants them.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result};

use crate::{prober_bin, run_checked};

static COPIES: AtomicU32 = AtomicU32::new(0);

/// A world-executable copy of prober in a fresh directory of its own, removed when dropped.
pub struct ProberCopy {
    dir: PathBuf,
    pub bin: PathBuf,
}

impl ProberCopy {
    /// Copies [`prober_bin`] to `/tmp/prober-tests-nobody-<pid>-<n>/prober`, mode 0755 (and its
    /// directory too).
    pub fn new() -> Result<ProberCopy> {
        let n = COPIES.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("prober-tests-nobody-{}-{n}", std::process::id()));
        fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // From here on, Drop removes the directory.
        let copy = ProberCopy {
            bin: dir.join("prober"),
            dir,
        };
        let world_executable = || fs::Permissions::from_mode(0o755);
        fs::set_permissions(&copy.dir, world_executable())?;
        fs::copy(prober_bin(), &copy.bin).context("copying prober")?;
        fs::set_permissions(&copy.bin, world_executable())?;
        Ok(copy)
    }

    /// Gives the copy `capabilities` (`setcap`'s spelling, e.g. `cap_net_raw`), permitted and
    /// effective: what `setcap <capabilities>+ep` does.
    pub fn grant(&self, capabilities: &str) -> Result<()> {
        run_checked(
            Command::new("setcap")
                .arg(format!("{capabilities}+ep"))
                .arg(&self.bin),
        )?;
        Ok(())
    }

    /// The copy with `args`, run as uid and gid 65534 with no supplementary groups and no
    /// inheritable capabilities (`setpriv` execs it, so the child's PID is prober's).
    pub fn command_as_nobody<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(&self.bin)
        .args(args);
        cmd
    }
}

impl Drop for ProberCopy {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}
