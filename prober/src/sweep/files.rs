//! Files named on the command line, opened as a root process may open them in a directory that
//! others can write to (/tmp): results go only into a file prober creates, or into a regular
//! file the user asked to overwrite, never through a symbolic link; a file read must be a
//! regular file of bounded size, so that a FIFO, a device or a huge file is refused before
//! anything is read from it.
use std::{
    fs::{File, FileType, Metadata, OpenOptions},
    io::{BufWriter, Read as _, Write},
    os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use anyhow::{anyhow, bail, Context as _, Result};

use crate::{echo, output};

/// The most a file read may hold: an exclude file of 64 MiB lists over three million blocks,
/// far more than any real one.
pub const MAX_READ_BYTES: u64 = 64 << 20;

/// Where `--output` writes, and whether an existing file may be overwritten (`--force`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputFile {
    pub path: PathBuf,
    pub overwrite: bool,
}

/// Where a run's results or lines go: the `--output` file, created now, or stdout.
pub fn writer(output: Option<&OutputFile>) -> Result<Box<dyn Write + Send>> {
    Ok(match output {
        Some(file) => Box::new(BufWriter::new(file.create()?)),
        None => Box::new(output::stdout()?),
    })
}

/// Either way: O_NOFOLLOW refuses a symbolic link as the last component, and O_NONBLOCK
/// opens an existing FIFO or device at once (for the check below) rather than waiting on it.
const OPEN_FLAGS: i32 = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY;

impl OutputFile {
    /// Creates the file (mode 0600, less the umask), or with `overwrite` empties an existing
    /// regular file (keeping its mode).
    pub fn create(&self) -> Result<File> {
        let shown = echo::path(&self.path);
        let through_link = || anyhow!("refusing to write through the symbolic link {shown}");
        let mut options = OpenOptions::new();
        options.write(true).mode(0o600).custom_flags(OPEN_FLAGS);
        if self.overwrite {
            options.create(true);
        } else {
            // O_EXCL: never an existing file, nor a link (even a dangling one).
            options.create_new(true);
        }
        let file = options
            .open(&self.path)
            .map_err(|error| match error.raw_os_error() {
                Some(libc::ELOOP) => through_link(),
                Some(libc::EEXIST) if self.path.is_symlink() => through_link(),
                Some(libc::EEXIST) => anyhow!("{shown} exists: use --force to overwrite it"),
                // A FIFO without a reader, a socket or a device without its driver.
                Some(libc::ENXIO) => anyhow!("the output file {shown} is not a regular file"),
                _ => anyhow!(error).context(format!("creating the output file {shown}")),
            })?;
        regular_file(&file, &format!("the output file {shown}"))?;
        if self.overwrite {
            file.set_len(0)
                .with_context(|| format!("emptying the output file {shown}"))?;
        }
        Ok(file)
    }
}

/// The text of the file at `path`, which messages call `what` ("the exclude file"): refused
/// unless it is a regular file of at most [`MAX_READ_BYTES`] of UTF-8.
pub fn read_text(path: &Path, what: &str) -> Result<String> {
    String::from_utf8(read_bytes(path, what)?).map_err(|_| {
        anyhow!(
            "reading {what} {}: stream did not contain valid UTF-8",
            echo::path(path)
        )
    })
}

/// The bytes of the file at `path`, which messages call `what` ("the data file"): refused
/// unless it is a regular file of at most [`MAX_READ_BYTES`].
pub fn read_bytes(path: &Path, what: &str) -> Result<Vec<u8>> {
    let named = format!("{what} {}", echo::path(path));
    let too_big = || {
        anyhow!(
            "{named} is larger than {} MiB, the most prober reads",
            MAX_READ_BYTES >> 20
        )
    };
    // O_NONBLOCK: a FIFO opens at once and is refused below instead of waiting for a writer.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .with_context(|| format!("opening {named}"))?;
    if regular_file(&file, &named)?.len() > MAX_READ_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    // The file may grow after the check: never read past the limit.
    file.take(MAX_READ_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {named}"))?;
    if bytes.len() as u64 > MAX_READ_BYTES {
        return Err(too_big());
    }
    Ok(bytes)
}

/// The metadata of `file`, which messages call `named`, if it is a regular file.
fn regular_file(file: &File, named: &str) -> Result<Metadata> {
    let metadata = file
        .metadata()
        .with_context(|| format!("checking {named}"))?;
    if !metadata.is_file() {
        bail!(
            "{named} is {}, not a regular file",
            kind(metadata.file_type())
        );
    }
    Ok(metadata)
}

/// What a file that is not a regular file is, for a message.
fn kind(file_type: FileType) -> &'static str {
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "something else"
    }
}

#[cfg(test)]
mod tests {
    use std::{
        fs,
        os::unix::fs::{symlink, PermissionsExt as _},
        sync::mpsc,
        thread,
        time::Duration,
    };

    use prober_tests::ScratchDir;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn output(path: &Path, overwrite: bool) -> Result<File> {
        OutputFile {
            path: path.to_path_buf(),
            overwrite,
        }
        .create()
    }

    /// A root-only file that a symbolic link in a shared directory points at.
    fn secret(dir: &ScratchDir) -> PathBuf {
        let secret = dir.path.join("secret");
        fs::write(&secret, "root's\n").unwrap();
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
        secret
    }

    #[test]
    fn output_is_a_new_private_file() {
        let dir = ScratchDir::new("output-new").unwrap();
        let path = dir.path.join("results");
        // With no umask at all, the mode is prober's own choice. SAFETY: umask only swaps the
        // process's mask, and the old one is put back.
        let old = unsafe { libc::umask(0) };
        let created = output(&path, false);
        unsafe { libc::umask(old) };
        created.unwrap();
        assert_eq!(mode(&path), 0o600);
        let again = output(&path, false).unwrap_err().to_string();
        assert_eq!(
            again,
            format!("{} exists: use --force to overwrite it", path.display())
        );
    }

    #[test]
    fn force_empties_an_existing_regular_file() {
        let dir = ScratchDir::new("output-force").unwrap();
        let path = dir.path.join("results");
        fs::write(&path, "old results\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        output(&path, true).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "");
        assert_eq!(mode(&path), 0o640, "an overwritten file keeps its mode");
        output(&dir.path.join("fresh"), true).expect("--force also creates");
    }

    #[test]
    fn output_never_goes_through_a_link() {
        let dir = ScratchDir::new("output-link").unwrap();
        let secret = secret(&dir);
        let link = dir.path.join("link");
        symlink(&secret, &link).unwrap();
        let dangling = dir.path.join("dangling");
        let missing = dir.path.join("missing");
        symlink(&missing, &dangling).unwrap();
        for overwrite in [false, true] {
            for path in [&link, &dangling] {
                let error = output(path, overwrite).unwrap_err().to_string();
                assert_eq!(
                    error,
                    format!(
                        "refusing to write through the symbolic link {}",
                        path.display()
                    )
                );
            }
        }
        assert_eq!(fs::read_to_string(&secret).unwrap(), "root's\n");
        assert_eq!(mode(&secret), 0o600);
        assert!(!missing.exists(), "a dangling link's target is not created");
    }

    #[test]
    fn output_is_a_regular_file() {
        let dir = ScratchDir::new("output-special").unwrap();
        let fifo = dir.fifo("fifo").unwrap();
        for (path, kind) in [
            (fifo.as_path(), "is not a regular file"),
            (&dir.path, "Is a directory"),
            (
                Path::new("/dev/null"),
                "is a character device, not a regular file",
            ),
        ] {
            let error = format!("{:#}", output(path, true).unwrap_err());
            assert!(error.contains(kind), "{error}");
        }
    }

    #[test]
    fn reads_refuse_what_is_not_a_small_regular_file() {
        let dir = ScratchDir::new("read-special").unwrap();
        let fifo = dir.fifo("fifo").unwrap();
        for (path, kind) in [
            (PathBuf::from("/dev/zero"), "a character device"),
            (fifo, "a FIFO"),
            (dir.path.clone(), "a directory"),
        ] {
            // On a thread, so that a read that blocks (a FIFO without a writer) fails the test
            // instead of hanging it.
            let (done, outcome) = mpsc::channel();
            let reading = path.clone();
            thread::spawn(move || done.send(read_text(&reading, "the exclude file").map(drop)));
            let error = outcome
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("reading {} blocked", path.display()))
                .unwrap_err();
            assert_eq!(
                error.to_string(),
                format!(
                    "the exclude file {} is {kind}, not a regular file",
                    path.display()
                )
            );
        }

        let big = dir.path.join("big");
        File::create(&big)
            .unwrap()
            .set_len(MAX_READ_BYTES + 1)
            .unwrap();
        assert_eq!(
            read_text(&big, "the exclude file").unwrap_err().to_string(),
            format!(
                "the exclude file {} is larger than 64 MiB, the most prober reads",
                big.display()
            )
        );
        let small = dir.path.join("small");
        fs::write(&small, "198.18.0.0/15\n").unwrap();
        assert_eq!(
            read_text(&small, "the exclude file").unwrap(),
            "198.18.0.0/15\n"
        );
        assert!(read_text(&dir.path.join("none"), "the exclude file")
            .unwrap_err()
            .to_string()
            .starts_with("opening the exclude file"));
    }
}
