//! Bounds on scenario text, checked before the YAML parser sees it.
//!
//! The parser (libyaml's design, in serde_yaml_ng) already refuses alias expansion past its
//! repetition limit and nesting past 128 levels, but it only notices the nesting after
//! scanning it, and scanning costs time proportional to depth × tokens: 30,000 nested `[`
//! take seconds, the 1 MiB limit's worth would take hours. So flow nesting (`[`, `{`) is
//! measured here first, in one linear pass that follows YAML's comments, quoted scalars and
//! block scalars, and a text nested deeper than any drill needs is refused at its position.

use super::ScenarioError;

/// The largest scenario text accepted (file, `PUT /scenario` or one API rule): a thousand
/// commented rules take about 150 KiB, so this only stops a wrong file or a hostile one.
pub const MAX_SCENARIO_BYTES: usize = 1024 * 1024;

/// Deepest `[`/`{` nesting accepted; a real scenario uses four or five.
pub const MAX_FLOW_DEPTH: usize = 64;

/// Refuses text over [`MAX_SCENARIO_BYTES`] or nested deeper than [`MAX_FLOW_DEPTH`].
pub(super) fn check(text: &str, origin: &str) -> Result<(), ScenarioError> {
    if text.len() > MAX_SCENARIO_BYTES {
        return Err(ScenarioError {
            origin: origin.to_owned(),
            position: None,
            message: format!(
                "the scenario is {} bytes; the limit is {MAX_SCENARIO_BYTES} bytes (1 MiB), far above any real drill",
                text.len()
            ),
        });
    }
    if let Some(position) = too_deep(text) {
        return Err(ScenarioError {
            origin: origin.to_owned(),
            position: Some(position),
            message: format!("`[`/`{{` nested more than {MAX_FLOW_DEPTH} levels deep"),
        });
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    Plain,
    SingleQuoted,
    DoubleQuoted,
}

/// The 1-based line and column of the first `[`/`{` past [`MAX_FLOW_DEPTH`], if any.
fn too_deep(text: &str) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    let mut state = State::Plain;
    // Inside a block scalar (`|`, `>`): the indentation of the line that began it, and of
    // its first line of text; lines indented at least that much are its text.
    let mut block_scalar: Option<(usize, Option<usize>)> = None;
    for (line_index, line) in text.split('\n').enumerate() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        if let Some((parent, content)) = block_scalar {
            if line.trim().is_empty() {
                continue;
            }
            match content {
                None if indent > parent => {
                    block_scalar = Some((parent, Some(indent)));
                    continue;
                }
                Some(content) if indent >= content => continue,
                _ => block_scalar = None,
            }
        }
        // The last significant character before this one on the line, and whether
        // whitespace followed it: a quote opens a quoted scalar only where a scalar can
        // begin (line start, after `[ { ,` or an indicator `- ? :` and a space).
        let mut previous: Option<char> = None;
        let mut spaced = true;
        let mut chars = line.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match state {
                State::DoubleQuoted => match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => state = State::Plain,
                    _ => {}
                },
                State::SingleQuoted => {
                    if c == '\'' {
                        if chars.peek().map(|&(_, n)| n) == Some('\'') {
                            chars.next();
                        } else {
                            state = State::Plain;
                        }
                    }
                }
                State::Plain => {
                    let scalar_may_start = match previous {
                        None => true,
                        Some('[' | '{' | ',') => true,
                        Some('-' | '?' | ':') => spaced || depth > 0,
                        _ => false,
                    };
                    match c {
                        '#' if spaced => break,
                        '"' if scalar_may_start => state = State::DoubleQuoted,
                        '\'' if scalar_may_start => state = State::SingleQuoted,
                        '[' | '{' => {
                            depth += 1;
                            if depth > MAX_FLOW_DEPTH {
                                return Some((line_index + 1, line[..at].chars().count() + 1));
                            }
                        }
                        ']' | '}' => depth = depth.saturating_sub(1),
                        '|' | '>' if depth == 0 && scalar_may_start && block_scalar_header(&line[at + 1..]) => {
                            block_scalar = Some((indent, None));
                            break;
                        }
                        _ => {}
                    }
                    if c.is_whitespace() {
                        spaced = true;
                    } else {
                        previous = Some(c);
                        spaced = false;
                    }
                }
            }
        }
    }
    None
}

/// Whether what follows `|` or `>` makes it a block scalar header: indentation and chomping
/// indicators, then nothing but a comment.
fn block_scalar_header(rest: &str) -> bool {
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit() || c == '+' || c == '-');
    let rest = rest.trim_start();
    rest.is_empty() || rest.starts_with('#')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(n: usize) -> String {
        format!("{}1{}", "[".repeat(n), "]".repeat(n))
    }

    #[test]
    fn deep_flow_nesting_is_found_at_its_place() {
        assert_eq!(too_deep(&format!("rules: {}", nested(MAX_FLOW_DEPTH))), None);
        let text = format!("name: x\nrules: {}", nested(MAX_FLOW_DEPTH + 1));
        assert_eq!(too_deep(&text), Some((2, 8 + MAX_FLOW_DEPTH)));
        let maps = format!("a: {}", "{b: ".repeat(100));
        assert!(too_deep(&maps).is_some());
    }

    #[test]
    fn brackets_in_comments_quotes_and_block_scalars_do_not_count() {
        let deep = "[".repeat(100);
        for text in [
            format!("description: \"{deep}\"\n"),
            format!("description: '{deep} it''s'\n"),
            format!("# {deep}\nname: x # {deep}\n"),
            format!("description: |\n  {deep}\n\n  more {deep}\nname: x\n"),
            format!("rules:\n  - description: >-\n      {deep}\n    name: x\n"),
            format!("key: \"multi\n  line {deep}\n  string\"\n"),
            format!("key: \"escaped \\\" {deep}\"\n"),
        ] {
            assert_eq!(too_deep(&text), None, "{text}");
        }
    }

    #[test]
    fn closing_brackets_hidden_in_strings_do_not_hide_real_nesting() {
        let closes = "]".repeat(1000);
        for text in [
            format!("description: \"{closes}\"\nrules: {}", nested(100)),
            format!("description: |\n  {closes}\nrules: {}", nested(100)),
            format!("rules:\n  - description: |\n      {closes}\n    name: {}", nested(100)),
            format!("# {closes}\nrules: {}", nested(100)),
            // Quotes inside plain scalars are text, not the start of a string.
            format!("description: it's \"here\nrules: {}", nested(100)),
            format!("description: -\"\nrules: {}", nested(100)),
        ] {
            assert!(too_deep(&text).is_some(), "{text}");
        }
    }
}
