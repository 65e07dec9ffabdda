//! Peers that Debian does not ship in the version the benchmark needs: built once from their
//! source tarball in ../shared/peers (next to the workspace) into the target directory, never
//! installed system-wide (../shared/peers/README.md says how each builds).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use crate::env;

pub struct SourceBuild {
    /// The tarball in ../shared/peers.
    pub tarball: &'static str,
    /// The directory it unpacks to, in the target directory.
    pub dir: &'static str,
    /// The Debian packages the build needs (installed with the peers' packages).
    pub packages: &'static [&'static str],
    /// Run in `dir`, in order, when `binary` is missing.
    pub steps: &'static [&'static [&'static str]],
    /// The executable, relative to `dir`.
    pub binary: &'static str,
}

/// ZMap 4.3.4, which (unlike Debian's 2.1.1) scans many ports per run.
pub const ZMAP_4: SourceBuild = SourceBuild {
    tarball: "zmap-4.3.4.tar.gz",
    dir: "zmap-4.3.4",
    packages: &[
        "build-essential",
        "cmake",
        "libgmp3-dev",
        "gengetopt",
        "libpcap-dev",
        "flex",
        "byacc",
        "libjson-c-dev",
        "pkg-config",
        "libunistring-dev",
        "libjudy-dev",
    ],
    steps: &[
        &["cmake", ".", "-DENABLE_DEVELOPMENT=OFF"],
        &["make", "-j2"],
    ],
    binary: "src/zmap",
};

impl SourceBuild {
    /// Where the built executable is (or will be).
    pub fn path(&self) -> Result<PathBuf> {
        Ok(env::target_dir()?.join(self.dir).join(self.binary))
    }

    /// Unpacks and builds it unless the executable is already there (a build that stopped
    /// half-way is resumed: the steps are incremental).
    pub fn ensure_built(&self) -> Result<()> {
        let binary = self.path()?;
        if binary.is_file() {
            return Ok(());
        }
        let target = env::target_dir()?;
        let tarball = env::workspace_root()
            .join("../shared/peers")
            .join(self.tarball);
        if !tarball.is_file() {
            bail!(
                "{} is missing: the benchmark builds {} from it",
                tarball.display(),
                self.dir
            );
        }
        let source = target.join(self.dir);
        if !source.is_dir() {
            env::run(
                Command::new("tar")
                    .arg("xzf")
                    .arg(&tarball)
                    .arg("-C")
                    .arg(&target),
            )?;
        }
        eprintln!(
            "xtask: bench: building {} in {}",
            self.dir,
            source.display()
        );
        for step in self.steps {
            env::run(Command::new(step[0]).args(&step[1..]).current_dir(&source))
                .with_context(|| format!("building {}", self.dir))?;
        }
        if !binary.is_file() {
            bail!("building {} made no {}", self.dir, binary.display());
        }
        Ok(())
    }
}
