//! A walker over a [`tree::Node`] that collects every schema problem.
//!
//! Each accessor returns `None` after recording a [`Problem`], so a caller can
//! go on checking the rest of the file and report everything in one run.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::tree::{self, Key, Node, Value};

/// The maximum duration any key accepts: one year of 365.25 days, which
/// humantime writes as `1year`. No limit, timeout or interval needs more,
/// and `now` plus an absurd duration does not fit in an `Instant`.
pub const MAX_DURATION: Duration = Duration::from_secs(31_557_600);

/// One thing wrong with a config file, at the place it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// The 1-based line, or 0 for a problem with the whole file (such as a
    /// file that cannot be read), which is shown without line and column.
    pub line: u64,
    pub column: u64,
    /// Key path such as `app_config.istio.private_gateway.allowed_principals[1]`.
    pub path: String,
    pub message: String,
}

/// A position in the tree: the node and the key path that leads to it.
#[derive(Clone, Copy)]
pub struct Cursor<'a> {
    pub node: &'a Node,
    path: &'a str,
}

/// An owned key path, which child cursors borrow.
pub struct KeyPath(String);

/// A mapping whose keys were checked against the expected set.
pub struct Mapping<'a> {
    entries: &'a [(Key, Node)],
    path: String,
}

/// Collector of problems for one file.
pub struct Decoder {
    file: PathBuf,
    pub problems: Vec<Problem>,
    /// Settings that are valid but most likely not what was meant, such as
    /// an app on a private gate that is disabled. They stop nothing.
    pub warnings: Vec<Problem>,
    /// Whether files that the config names (TLS files, secret files) are
    /// left unread, as `check --skip-files` requests.
    pub skip_files: bool,
    /// The files left unread because of `skip_files`, each at the value that
    /// names it, with the path as the message.
    pub unread: Vec<Problem>,
}

// === impl Problem ===

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

// === impl Cursor ===

impl<'a> Cursor<'a> {
    pub fn root(node: &'a Node) -> Self {
        Cursor { node, path: "" }
    }

    pub fn path(&self) -> &str {
        self.path
    }
}

// === impl KeyPath ===

impl KeyPath {
    pub fn cursor<'a>(&'a self, node: &'a Node) -> Cursor<'a> {
        Cursor {
            node,
            path: &self.0,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A key written twice in one mapping.
struct DuplicateKey {
    /// Key path of the second one.
    path: String,
    name: String,
    line: u64,
    column: u64,
    first_line: u64,
}

/// Finds every key written again in the same mapping, in document order.
/// serde-saphyr can reject them while parsing, but its error names only the
/// key, not the mappings above it, so the tree is parsed with duplicates
/// kept and checked here, where key paths are known.
fn duplicate_keys(root: &Node) -> Vec<DuplicateKey> {
    let mut found = Vec::new();
    let mut pending = vec![(String::new(), root)];
    while let Some((path, node)) = pending.pop() {
        match &node.value {
            Value::Mapping(entries) => {
                for (i, (key, child)) in entries.iter().enumerate() {
                    let child_path = join(&path, &key.name).0;
                    if let Some((first, _)) = entries[..i].iter().find(|(k, _)| k.name == key.name)
                    {
                        found.push(DuplicateKey {
                            path: child_path.clone(),
                            name: key.name.clone(),
                            line: key.line,
                            column: key.column,
                            first_line: first.line,
                        });
                    }
                    pending.push((child_path, child));
                }
            }
            Value::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    pending.push((index(&path, i).0, item));
                }
            }
            _ => {}
        }
    }
    found.sort_by_key(|d| (d.line, d.column));
    found
}

/// Joins a key path and a child key.
pub fn join(parent: &str, key: &str) -> KeyPath {
    if parent.is_empty() {
        KeyPath(key.to_owned())
    } else {
        KeyPath(format!("{parent}.{key}"))
    }
}

/// Joins a key path and a list index.
pub fn index(parent: &str, i: usize) -> KeyPath {
    KeyPath(format!("{parent}[{i}]"))
}

// === impl Mapping ===

impl<'a> Mapping<'a> {
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Returns the node under `key` and its key path, if the key is present.
    pub fn get(&self, key: &str) -> Option<(KeyPath, &'a Node)> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(k, node)| (join(&self.path, &k.name), node))
    }

    pub fn entries(&self) -> impl Iterator<Item = (&'a Key, &'a Node)> {
        self.entries.iter().map(|(k, n)| (k, n))
    }
}

// === impl Decoder ===

impl Decoder {
    pub fn new(file: &Path) -> Self {
        Decoder {
            file: file.to_owned(),
            problems: Vec::new(),
            warnings: Vec::new(),
            skip_files: false,
            unread: Vec::new(),
        }
    }

    /// Returns true, and records the file as unread, when files named by
    /// the config are skipped.
    pub fn skips_file(&mut self, at: Cursor<'_>, file: &Path) -> bool {
        if !self.skip_files {
            return false;
        }
        self.unread.push(Problem {
            file: self.file.clone(),
            line: at.node.line,
            column: at.node.column,
            path: at.path.to_owned(),
            message: file.display().to_string(),
        });
        true
    }

    /// Parses a YAML document, or records why it cannot be read: a syntax
    /// error, or each duplicate key with the key path that names it.
    pub fn parse_document(&mut self, text: &str) -> Option<Node> {
        let root = match tree::parse(text) {
            Ok(root) => root,
            Err(e) => {
                let (mut line, mut column) = e
                    .location()
                    .map(|l| (l.line(), l.column()))
                    .unwrap_or((0, 0));
                let description = tree::describe_error(&e);
                let mut message = format!("invalid YAML: {description}");
                if let Some(tab) = find_tab(text, line, description.contains("tab")) {
                    (line, column) = tab;
                    message
                        .push_str("; indent with spaces, because YAML does not allow tabs there");
                }
                self.report_at(line, column, "", message);
                return None;
            }
        };
        let duplicates = duplicate_keys(&root);
        for duplicate in &duplicates {
            self.report_at(
                duplicate.line,
                duplicate.column,
                &duplicate.path,
                format!(
                    "duplicate key `{}`; it is first written at line {}; keep one of the two",
                    duplicate.name, duplicate.first_line
                ),
            );
        }
        duplicates.is_empty().then_some(root)
    }

    /// Records a warning at a line and column of the file.
    pub fn warn_at(&mut self, line: u64, column: u64, path: &str, message: impl Into<String>) {
        self.warnings.push(Problem {
            file: self.file.clone(),
            line,
            column,
            path: path.to_owned(),
            message: message.into(),
        });
    }

    /// Records a problem at the node under `at`.
    pub fn report(&mut self, at: Cursor<'_>, message: impl Into<String>) {
        self.report_at(at.node.line, at.node.column, at.path, message);
    }

    pub fn report_at(&mut self, line: u64, column: u64, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            column,
            path: path.to_owned(),
            message: message.into(),
        });
    }

    /// Reads a mapping and reports each key not in `known`.
    pub fn mapping<'a>(&mut self, at: Cursor<'a>, known: &[&str]) -> Option<Mapping<'a>> {
        let Value::Mapping(entries) = &at.node.value else {
            self.report(at, format!("expected a mapping, found {}", at.node.kind()));
            return None;
        };
        for (key, _) in entries {
            if !known.contains(&key.name.as_str()) {
                let path = join(at.path, &key.name);
                self.report_at(
                    key.line,
                    key.column,
                    path.as_str(),
                    format!(
                        "unknown key `{}`; expected one of: {}",
                        key.name,
                        known.join(", ")
                    ),
                );
            }
        }
        Some(Mapping {
            entries,
            path: at.path.to_owned(),
        })
    }

    /// Reads a mapping whose keys are names chosen by the user.
    pub fn open_mapping<'a>(&mut self, at: Cursor<'a>) -> Option<Mapping<'a>> {
        let Value::Mapping(entries) = &at.node.value else {
            self.report(at, format!("expected a mapping, found {}", at.node.kind()));
            return None;
        };
        Some(Mapping {
            entries,
            path: at.path.to_owned(),
        })
    }

    pub fn sequence<'a>(&mut self, at: Cursor<'a>) -> Option<&'a [Node]> {
        match &at.node.value {
            Value::Sequence(items) => Some(items),
            _ => {
                self.report(at, format!("expected a list, found {}", at.node.kind()));
                None
            }
        }
    }

    pub fn string(&mut self, at: Cursor<'_>) -> Option<String> {
        match &at.node.value {
            Value::String(s) => Some(s.clone()),
            _ => {
                let found = describe(at.node);
                self.report(at, format!("expected a string, found {found}"));
                None
            }
        }
    }

    pub fn boolean(&mut self, at: Cursor<'_>) -> Option<bool> {
        match &at.node.value {
            Value::Bool(b) => Some(*b),
            Value::String(s)
                if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") =>
            {
                self.report(
                    at,
                    format!("expected true or false, found the string {s:?}; remove the quotes"),
                );
                None
            }
            _ => {
                self.report(
                    at,
                    format!("expected true or false, found {}", describe(at.node)),
                );
                None
            }
        }
    }

    /// Reads a whole number in `min..=max`.
    pub fn integer(&mut self, at: Cursor<'_>, min: i128, max: i128) -> Option<i128> {
        match &at.node.value {
            Value::Integer(n) if (min..=max).contains(n) => Some(*n),
            Value::Integer(n) => {
                self.report(at, format!("{n} is out of range; expected {min} to {max}"));
                None
            }
            // YAML reads a number too large for an integer as a float.
            Value::Float(f) if f.fract() == 0.0 && !(min as f64..=max as f64).contains(f) => {
                self.report(at, format!("{f} is out of range; expected {min} to {max}"));
                None
            }
            Value::Float(f) if f.fract() == 0.0 => {
                let whole = *f as i128;
                self.report(
                    at,
                    format!("expected a whole number, found {f:?}; write {whole}"),
                );
                None
            }
            _ => {
                self.report(
                    at,
                    format!("expected a whole number, found {}", describe(at.node)),
                );
                None
            }
        }
    }

    /// Reads a duration written like `30s`, `5m` or `1h 30m`, greater than
    /// zero.
    pub fn duration(&mut self, at: Cursor<'_>) -> Option<Duration> {
        let d = self.duration_or_zero(at)?;
        if d.is_zero() {
            self.report(at, "the duration must be greater than zero");
            return None;
        }
        Some(d)
    }

    /// Reads a duration written like `0s`, `30s`, `5m` or `1h 30m`.
    pub fn duration_or_zero(&mut self, at: Cursor<'_>) -> Option<Duration> {
        if let Value::Integer(n) = at.node.value {
            self.report(
                at,
                format!("expected a duration with a unit, such as {n}s or {n}ms, found {n}"),
            );
            return None;
        }
        let text = self.string(at)?;
        match humantime::parse_duration(&text) {
            Ok(d) if d > MAX_DURATION => {
                let key = at.path.rsplit('.').next().unwrap_or(at.path);
                self.report(
                    at,
                    format!(
                        "{key} {text} is too long; the maximum is {}",
                        humantime::format_duration(MAX_DURATION)
                    ),
                );
                None
            }
            Ok(d) => Some(d),
            Err(_) => {
                self.report(
                    at,
                    format!("invalid duration {text:?}; expected a value such as 500ms, 30s or 5m"),
                );
                None
            }
        }
    }

    /// Reads a string and converts it with `parse`, whose error text is
    /// reported as is.
    pub fn parse<T>(
        &mut self,
        at: Cursor<'_>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let text = self.string(at)?;
        match parse(&text) {
            Ok(value) => Some(value),
            Err(message) => {
                self.report(at, mask_url_in(message, &text));
                None
            }
        }
    }

    /// Reads a list and converts each item with `item`.
    pub fn list<'a, T>(
        &mut self,
        at: Cursor<'a>,
        mut item: impl FnMut(&mut Self, Cursor<'_>) -> Option<T>,
    ) -> Option<Vec<T>> {
        let items = self.sequence(at)?;
        let mut values = Vec::with_capacity(items.len());
        let mut complete = true;
        for (i, node) in items.iter().enumerate() {
            let path = index(at.path, i);
            match item(self, path.cursor(node)) {
                Some(value) => values.push(value),
                None => complete = false,
            }
        }
        complete.then_some(values)
    }
}

/// Finds the tab that a YAML error at the 1-based `line` is about, and
/// returns its line and column. The parser's mark can sit at the end of
/// the line before the tab (as for "while scanning a plain scalar, found a
/// tab"). So the tab is looked for in the indentation of the mark's line
/// and the next one. When the parser's message names a tab (`names_tab`),
/// it is looked for anywhere from the mark's line on. An error without a
/// line (0) is searched from the first line.
fn find_tab(text: &str, line: u64, names_tab: bool) -> Option<(u64, u64)> {
    let first = line.max(1) as usize - 1;
    let near = if line == 0 { usize::MAX } else { 2 };
    let indent_tab = |l: &str| {
        l.chars()
            .take_while(|c| c.is_whitespace())
            .position(|c| c == '\t')
    };
    let any_tab = |l: &str| l.chars().position(|c| c == '\t');

    let lines = text.lines().enumerate().skip(first);
    let mut found = lines
        .clone()
        .take(near)
        .find_map(|(i, l)| Some((i, indent_tab(l)?)));
    if found.is_none() && names_tab {
        found = lines.clone().find_map(|(i, l)| Some((i, any_tab(l)?)));
    }
    found.map(|(i, column)| (i as u64 + 1, column as u64 + 1))
}

/// Replaces `text` in `message` with `text` without user info when `text`
/// is a URL, in case a parser echoed a URL's password.
fn mask_url_in(message: String, text: &str) -> String {
    let masked = crate::redact::url_userinfo(text);
    if !text.contains("://") || masked == text {
        return message;
    }
    message
        .replace(&format!("{text:?}"), &format!("{masked:?}"))
        .replace(text, &masked)
}

/// Shows a scalar in an error message, or names the node's type. A URL is
/// shown without its user info.
fn describe(node: &Node) -> String {
    match &node.value {
        Value::String(s) if s.contains("://") => format!("{:?}", crate::redact::url_userinfo(s)),
        Value::String(s) => format!("{s:?}"),
        Value::Integer(n) => n.to_string(),
        Value::Float(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => node.kind().to_owned(),
    }
}
