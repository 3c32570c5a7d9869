//! Loading `.env`: the one loader both binaries call from `main`, before any thread starts.
//!
//! dotenvy does the parsing; this module owns what reaches the user. dotenvy's own parse error
//! quotes the offending line, and `.env` holds passwords, so its text is never shown: the
//! message gives the file, the line number, the variable name when the line starts with a valid
//! one, and what is wrong, and nothing after the `=`.

use std::cell::Cell;
use std::io::{self, Read};
use std::path::Path;
use std::rc::Rc;

use crate::file;

/// Largest `.env` read: a few hundred variables take a few KiB.
pub const DOTENV_MAX_BYTES: u64 = 1024 * 1024;

/// Loads the variables of the `.env` file at `path` into the process environment. A missing
/// file is fine; variables already set win over the file. Nothing is set unless the whole file
/// parses. The error names the file and the line, never a value.
pub fn load_dotenv(path: &Path) -> Result<(), String> {
    let bytes = match file::read_limited(path, DOTENV_MAX_BYTES) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let pairs = parse(&bytes).map_err(|e| e.message(path, &bytes))?;
    for (name, value) in pairs {
        if std::env::var_os(&name).is_none() {
            std::env::set_var(name, value);
        }
    }
    Ok(())
}

/// Why a `.env` file does not parse, without any of its text.
#[derive(Debug, PartialEq, Eq)]
enum DotenvError {
    /// The logical line starting at `line` (1-based) does not parse.
    Line { line: usize },
    /// Reading failed (the file is not UTF-8).
    Io(String),
}

impl DotenvError {
    fn message(&self, path: &Path, bytes: &[u8]) -> String {
        match self {
            DotenvError::Io(e) => format!("{}: {e}", path.display()),
            DotenvError::Line { line } => {
                let text = String::from_utf8_lossy(file::strip_bom(bytes));
                let (name, problem) = describe(&text, *line);
                let name = name.map(|n| format!(" {n}:")).unwrap_or_default();
                format!(
                    "{}:{line}:{name} {problem}; the line is not shown, it may hold a secret",
                    path.display()
                )
            }
        }
    }
}

/// The `(name, value)` pairs of a `.env` file, in order.
fn parse(bytes: &[u8]) -> Result<Vec<(String, String)>, DotenvError> {
    let lines_read = Rc::new(Cell::new(0));
    let reader = LineByLine {
        rest: file::strip_bom(bytes),
        lines_read: Rc::clone(&lines_read),
    };
    let mut pairs = Vec::new();
    for item in dotenvy::from_read_iter(reader) {
        match item {
            Ok(pair) => pairs.push(pair),
            Err(dotenvy::Error::LineParse(text, _)) => {
                // `text` is the failing logical line (or its value part), which ends at the
                // last line read; it may span several lines (an open quote runs on).
                let spans = text.lines().count().max(1);
                let line = (lines_read.get() + 1).saturating_sub(spans).max(1);
                return Err(DotenvError::Line { line });
            }
            Err(dotenvy::Error::Io(e)) => return Err(DotenvError::Io(e.to_string())),
            Err(e) => return Err(DotenvError::Io(e.to_string())),
        }
    }
    Ok(pairs)
}

/// The variable name on line `line` when it starts with one, and what is wrong with the line.
fn describe(text: &str, line: usize) -> (Option<&str>, &'static str) {
    let physical = text.lines().nth(line - 1).unwrap_or_default();
    let statement = physical.trim_start();
    let statement = statement.strip_prefix("export ").unwrap_or(statement);
    let Some((name, _)) = statement.split_once('=') else {
        return (None, "not a NAME=value line");
    };
    let name = name.trim_end();
    if !is_name(name) {
        return (
            None,
            "not a NAME=value line (a name is letters, digits, `_` and `.`, not starting with a \
             digit)",
        );
    }
    let problem = if has_open_quote(value_after(text, line)) {
        "unterminated quote in the value"
    } else {
        "malformed value (an unquoted space, an unknown backslash escape or a stray quote)"
    };
    (Some(name), problem)
}

/// Everything after the `=` of line `line` to the end of the file.
fn value_after(text: &str, line: usize) -> &str {
    let start: usize = text
        .split_inclusive('\n')
        .take(line - 1)
        .map(str::len)
        .sum();
    let rest = &text[start..];
    rest.split_once('=')
        .map(|(_, value)| value)
        .unwrap_or_default()
}

/// True if a quote opened in `value` is still open at the end of its logical line, i.e. no
/// closing quote follows before the text runs out.
fn has_open_quote(value: &str) -> bool {
    let value = value.trim_start();
    let mut chars = value.chars();
    match chars.next() {
        Some('\'') => !chars.any(|c| c == '\''),
        Some('"') => {
            let mut escaped = false;
            for c in chars {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => return false,
                    _ => {}
                }
            }
            true
        }
        _ => false,
    }
}

fn is_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// Hands the text to dotenvy one line per read, counting the lines handed out, so that when
/// dotenvy reports a bad line, the count says where it ends (its buffer never holds more).
struct LineByLine<'a> {
    rest: &'a [u8],
    lines_read: Rc<Cell<usize>>,
}

impl Read for LineByLine<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.rest.is_empty() || buf.is_empty() {
            return Ok(0);
        }
        let line_end = self
            .rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(self.rest.len(), |i| i + 1);
        let n = line_end.min(buf.len());
        buf[..n].copy_from_slice(&self.rest[..n]);
        let ends_line = self.rest[n - 1] == b'\n' || n == self.rest.len();
        self.rest = &self.rest[n..];
        if ends_line {
            self.lines_read.set(self.lines_read.get() + 1);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: &str) -> String {
        parse(text.as_bytes())
            .unwrap_err()
            .message(Path::new(".env"), text.as_bytes())
    }

    #[test]
    fn good_lines_parse_in_order_with_comments_quotes_and_a_bom() {
        let text = "\u{feff}# a comment\nA=1\n\nexport B='two words'\nC=\"x\ny\"\nD=\n";
        let pairs = parse(text.as_bytes()).unwrap();
        let expected = [("A", "1"), ("B", "two words"), ("C", "x\ny"), ("D", "")];
        assert_eq!(pairs.len(), expected.len(), "{pairs:?}");
        for ((name, value), (want_name, want_value)) in pairs.iter().zip(expected) {
            assert_eq!((name.as_str(), value.as_str()), (want_name, want_value));
        }
    }

    #[test]
    fn an_unterminated_quote_names_the_line_and_the_variable_but_no_part_of_the_value() {
        let text = "LOG_LEVEL=info\n# the database\nDB_PASSWORD=\"Hunter2Secret\nPORT=1\n";
        let message = message(text);
        assert!(
            message.starts_with(".env:3: DB_PASSWORD: unterminated quote"),
            "{message}"
        );
        for part in ["Hunter", "Secret", "2Sec", "ter2", "\"H", "PORT=1"] {
            assert!(!message.contains(part), "`{part}` leaked into: {message}");
        }
    }

    #[test]
    fn bad_lines_are_located_by_number_and_never_quoted() {
        let cases = [
            (
                "A=1\nB=2\nthis is not a dotenv line\n",
                3,
                "not a NAME=value",
                "no `=`",
            ),
            (
                "A=1\n9X=Pa55word\n",
                2,
                "not a NAME=value",
                "a name starting with a digit",
            ),
            (
                "A=1\nTOKEN=Pa55 word\n",
                2,
                "TOKEN: malformed value",
                "an unquoted space",
            ),
            (
                "A=\"one\ntwo\"\nB=\"ok\"\nSECRET='Pa55word\n\nmore\n",
                4,
                "SECRET: unterminated quote",
                "an open quote after a multi-line value, running to the end",
            ),
            (
                "A=1\nKEY=\"Pa55\\qword\"\n",
                2,
                "KEY: malformed value",
                "an unknown escape",
            ),
        ];
        for (text, line, needle, reason) in cases {
            let message = message(text);
            assert!(
                message.starts_with(&format!(".env:{line}:")),
                "{reason}: {message}"
            );
            assert!(message.contains(needle), "{reason}: {message}");
            for part in ["Pa55", "word", "55w"] {
                assert!(!message.contains(part), "{reason}: `{part}` in {message}");
            }
        }
    }

    #[test]
    fn a_missing_file_is_fine() {
        assert_eq!(load_dotenv(Path::new("/nonexistent/.env")), Ok(()));
    }
}
