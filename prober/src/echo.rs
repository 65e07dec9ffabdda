//! User input as prober's messages show it. Input can be huge (a 50 MB line of an exclude file)
//! or hostile (terminal escape sequences that rewrite the screen, bidirectional overrides that
//! reorder it), so messages show a bounded excerpt with such characters escaped.
use std::path::Path;

/// The most characters of a value a message shows.
const VALUE_CHARS: usize = 64;
/// The most characters of a path a message shows: PATH_MAX is 4096, real paths are far shorter.
const PATH_CHARS: usize = 256;
/// The most characters of a whole error line.
const LINE_CHARS: usize = 1024;

/// A value the user gave (a target, a port specification, a line of a file), for a message.
pub fn value(text: &str) -> String {
    excerpt(text, VALUE_CHARS)
}

/// A path the user gave, for a message.
pub fn path(path: &Path) -> String {
    excerpt(&path.to_string_lossy(), PATH_CHARS)
}

/// A whole error line, as the last guard for input a lower layer echoed as it came (clap's
/// messages quote unknown options whole).
pub fn line(text: &str) -> String {
    excerpt(text, LINE_CHARS)
}

/// Whether `c` changes a terminal's state or the order text is shown in, rather than showing
/// as itself: control characters (C0, DEL, C1, ESC among them) and the invisible
/// bidirectional and zero-width format characters.
fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}')
}

/// The first `most` characters of `text`, hidden ones written as escapes (`\x1b`, `\u{202e}`),
/// and `…` when more followed.
fn excerpt(text: &str, most: usize) -> String {
    let mut shown = String::new();
    let mut chars = text.chars();
    for c in chars.by_ref().take(most) {
        match u32::from(c) {
            _ if !is_hidden(c) => shown.push(c),
            code @ 0..=0xff => shown.push_str(&format!("\\x{code:02x}")),
            code => shown.push_str(&format!("\\u{{{code:x}}}")),
        }
    }
    if chars.next().is_some() {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_shown_not_obeyed() {
        assert_eq!(value("198.18.0.1"), "198.18.0.1");
        assert_eq!(
            value("\x1b[2J\x1b]0;owned\x07x\ty\r\n\u{7f}"),
            "\\x1b[2J\\x1b]0;owned\\x07x\\x09y\\x0d\\x0a\\x7f"
        );
        assert_eq!(value("\u{9b}31m"), "\\x9b31m", "the one-byte CSI of C1");
        assert_eq!(
            value("evil\u{202e}txt.exe\u{200b}"),
            "evil\\u{202e}txt.exe\\u{200b}"
        );
        assert_eq!(
            value("grüße, 東京"),
            "grüße, 東京",
            "printable text is kept"
        );
    }

    #[test]
    fn long_input_is_cut() {
        let long = "a".repeat(50_000_000);
        let shown = value(&long);
        assert_eq!(shown, format!("{}…", "a".repeat(VALUE_CHARS)));
        assert_eq!(value(&"b".repeat(VALUE_CHARS)), "b".repeat(VALUE_CHARS));
        assert_eq!(
            value(&"é".repeat(VALUE_CHARS + 1)).chars().count(),
            VALUE_CHARS + 1,
            "characters, not bytes, and never inside one"
        );
        assert_eq!(line(&long).chars().count(), LINE_CHARS + 1);
        assert_eq!(
            path(Path::new("/tmp/\x1b[31mred")),
            "/tmp/\\x1b[31mred",
            "paths are escaped too"
        );
    }
}
