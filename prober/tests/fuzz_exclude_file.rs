//! Fuzzing the `--exclude-file` reader with any file content: it either refuses the file with a
//! one-line error or returns the file's entries — one a line, `#` comments and blank lines
//! dropped, surrounding white space trimmed — in file order.

mod fuzzing;

use std::path::PathBuf;

use bolero::check;
use prober::sweep::targets::read_exclude_file;

/// The entries the documented format gives: per line, what precedes a `#`, trimmed, if anything.
fn entries(text: &str) -> Vec<&str> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|entry| !entry.is_empty())
        .collect()
}

#[test]
fn an_exclude_file_gives_its_entries_or_one_line_of_error() {
    // Cargo's scratch directory for integration tests; one file per process, rewritten for
    // every input.
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("fuzz-exclude-file-{}", std::process::id()));
    check!()
        .with_test_time(fuzzing::CI_TIME)
        .for_each(|content: &[u8]| {
            std::fs::write(&path, content).expect("writing the exclude file");
            match read_exclude_file(&path) {
                Ok(read) => {
                    for entry in &read {
                        assert!(!entry.is_empty(), "{read:?}");
                        assert_eq!(entry.trim(), entry, "trimmed: {read:?}");
                        assert!(!entry.contains(['#', '\n']), "{read:?}");
                    }
                    if let Ok(text) = std::str::from_utf8(content) {
                        assert_eq!(read, entries(text));
                    }
                }
                Err(error) => {
                    let line = format!("{error:#}");
                    assert!(
                        !line.contains('\n'),
                        "an error of more than one line: {line:?}"
                    );
                }
            }
        });
    let _ = std::fs::remove_file(&path);
}
