//! `${VAR}` and `${VAR:-default}` in the configuration text, substituted before it is
//! parsed, with the escaping each YAML quoting needs.

use std::path::Path;

use super::ConfigError;

/// A `${...}` reference that could not be resolved, with where it stands.
#[derive(Debug, PartialEq, Eq)]
pub enum SubstError {
    Missing {
        line: usize,
        key: String,
        variable: String,
    },
    Malformed {
        line: usize,
        text: String,
    },
}

impl SubstError {
    pub(super) fn into_config_error(self, path: &Path) -> ConfigError {
        match self {
            SubstError::Missing {
                line,
                key,
                variable,
            } => ConfigError::MissingVariable {
                path: path.to_owned(),
                line,
                key,
                variable,
            },
            SubstError::Malformed { line, text } => ConfigError::BadSubstitution {
                path: path.to_owned(),
                line,
                text,
            },
        }
    }
}

/// Replaces `${VAR}` and `${VAR:-default}` in YAML text; `$${` stays a literal `${`.
///
/// `${VAR}` needs VAR set (an empty value is a value); `${VAR:-default}` takes the default when
/// VAR is unset or empty, as the shell does. Comment lines are left alone. Inside a quoted YAML
/// scalar the value is escaped for that quoting, so secrets with `"`, `\` or `: ` survive:
/// write `password: "${DB_PASSWORD}"`.
pub fn substitute(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, SubstError> {
    let mut out = String::with_capacity(text.len());
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    for (index, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with('#') || !line.contains('$') {
            out.push_str(line);
            continue;
        }
        let mut rest = *line;
        while let Some(pos) = rest.find('$') {
            let (before, from_dollar) = rest.split_at(pos);
            out.push_str(before);
            if let Some(after) = from_dollar.strip_prefix("$${") {
                out.push_str("${");
                rest = after;
                continue;
            }
            let Some(after_brace) = from_dollar.strip_prefix("${") else {
                out.push('$');
                rest = &from_dollar[1..];
                continue;
            };
            let malformed = || SubstError::Malformed {
                line: index + 1,
                text: from_dollar.trim_end().chars().take(40).collect(),
            };
            let end = after_brace.find('}').ok_or_else(malformed)?;
            let expr = &after_brace[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (expr, None),
            };
            let valid_name = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_name {
                return Err(malformed());
            }
            let value = match (lookup(name), default) {
                (Some(v), Some(d)) if v.is_empty() => d.to_owned(),
                (Some(v), _) => v,
                (None, Some(d)) => d.to_owned(),
                (None, None) => {
                    return Err(SubstError::Missing {
                        line: index + 1,
                        key: key_path(&lines, index),
                        variable: name.to_owned(),
                    })
                }
            };
            let quote = quote_context(&out);
            push_escaped(&mut out, &value, quote);
            rest = &after_brace[end + 1..];
        }
        out.push_str(rest);
    }
    Ok(out)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Single,
    Double,
}

/// The quoting in force at the end of `text`, looking only at its last line.
fn quote_context(text: &str) -> Quote {
    let line = text.rsplit('\n').next().unwrap_or("");
    let mut state = Quote::None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        state = match (state, c) {
            (Quote::None, '"') => Quote::Double,
            (Quote::None, '\'') => Quote::Single,
            (Quote::Double, '\\') => {
                chars.next();
                Quote::Double
            }
            (Quote::Double, '"') | (Quote::Single, '\'') => Quote::None,
            (s, _) => s,
        };
    }
    state
}

fn push_escaped(out: &mut String, value: &str, quote: Quote) {
    match quote {
        Quote::None => out.push_str(value),
        Quote::Single => out.push_str(&value.replace('\'', "''")),
        Quote::Double => {
            for c in value.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push_str("\\t"),
                    c => out.push(c),
                }
            }
        }
    }
}

/// The dotted key a line belongs to (`database.password`), found from indentation.
pub(super) fn key_path(lines: &[&str], index: usize) -> String {
    let mut path = Vec::new();
    let mut indent = usize::MAX;
    for line in lines[..=index].iter().rev() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let this_indent = line.len() - trimmed.len();
        if this_indent < indent {
            if let Some((key, _)) = trimmed.split_once(':') {
                path.push(
                    key.trim()
                        .trim_matches(|c| c == '"' || c == '\'')
                        .to_owned(),
                );
            }
            indent = this_indent;
            if indent == 0 {
                break;
            }
        }
    }
    path.reverse();
    if path.is_empty() {
        "(top level)".into()
    } else {
        path.join(".")
    }
}

#[cfg(test)]
mod tests;
