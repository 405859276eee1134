//! Selectors: image-list entries that name a repository and a rule for
//! choosing among its tags (`nginx:~1.27`, `nginx:>=1.26 <1.28 newest=3`,
//! `quay.io/prometheus/node-exporter:match=^v1\.8\.\d+$`), rather than one
//! image. This module tells them apart from references, reads them, and picks
//! the tags they select from a repository's listing.
//!
//! An entry is `REPOSITORY:SELECTOR`: the longest prefix that is a repository
//! name, then what follows its ':' when that is not a tag. A valid reference is
//! never a selector, so every list that worked before reads the same.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::sync::{LazyLock, Mutex};

// Bytes rather than text: tags are ASCII, and only the bytes API compiles
// `.` and classes without Unicode, which costs a fraction of the memory.
use regex::bytes::{Regex, RegexBuilder};
use semver::{Version, VersionReq};
use serde::Deserialize;
use thiserror::Error;

use crate::reference::Reference;

/// How many tags a selector picks when it does not say.
const DEFAULT_NEWEST: usize = 1;
/// Each selected tag is warmed like a listed image: a cap keeps one entry from
/// turning into thousands of pulls.
const MAX_NEWEST: usize = 100;
/// Lists are untrusted input: a pattern may not compile into more than this
/// (`^[a-z0-9._-]{1,128}$`, as long as a tag can be, takes about half).
const REGEX_SIZE_LIMIT: usize = 64 << 10;
/// The lazy DFA's cache per pattern; past it, matching falls back to slower
/// engines rather than take more.
const REGEX_DFA_SIZE_LIMIT: usize = 256 << 10;
/// Compiled patterns kept for entries that repeat them; beyond this many
/// distinct ones, each compiles on its own. Near the size limit a pattern
/// keeps some 40 KiB, so the cache holds 10 MiB at most.
const CACHED_PATTERNS: usize = 256;
/// Docker caps a normalized name at 255 characters, and normalizing shortens a
/// written name by at most `index.` (six), so no longer prefix can be a name.
const WRITTEN_NAME_MAX_LEN: usize = 261;
const RANGE_HINT: &str = "write a range as for Cargo, e.g. ~1.27, ^2, >=1.26 <1.28 or 1.27.*";

/// A repository and the rule that picks tags from its listing.
#[derive(Debug, Clone)]
pub struct Selector {
    entry: String,
    written_repository: String,
    repository: Reference,
    range: Option<VersionReq>,
    newest: usize,
    matching: Option<Regex>,
    exclude: Option<Regex>,
}

/// The entry says all of a selector: two with the same text are the same.
impl PartialEq for Selector {
    fn eq(&self, other: &Selector) -> bool {
        self.entry == other.entry
    }
}

impl Eq for Selector {}

/// Why a selector does not parse. Each message quotes the offending value and
/// says how to write it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SelectorError {
    #[error("selector {entry:?} does not start with a repository name and ':': write REPOSITORY:SELECTOR, e.g. nginx:~1.27")]
    NoRepository { entry: String },
    #[error("selector {entry:?} has nothing after the repository's ':': write a version range, newest=N or match=REGEX, e.g. nginx:~1.27")]
    Empty { entry: String },
    #[error("invalid version range {range:?} in selector {entry:?}: {reason}; {RANGE_HINT}")]
    Range {
        range: String,
        entry: String,
        reason: String,
    },
    #[error("version range {token:?} comes after an option in selector {entry:?}: write the range first, e.g. nginx:>=1.26 <1.28 newest=3; a regular expression cannot hold white space, match it with \\s")]
    RangeAfterOption { token: String, entry: String },
    #[error("unknown option {key:?} in selector {entry:?}: the options are newest=N, match=REGEX and exclude=REGEX")]
    UnknownOption { key: String, entry: String },
    #[error("option {key}= given twice in selector {entry:?}: give it once")]
    DuplicateOption { key: &'static str, entry: String },
    #[error(
        "invalid newest={value} in selector {entry:?}: write a whole number from 1 to {MAX_NEWEST}"
    )]
    Newest { value: String, entry: String },
    #[error("invalid regular expression {pattern:?} in {key}= of selector {entry:?}: {reason}; write it as the Rust regex crate reads it, e.g. match=-alpine$")]
    Regex {
        key: &'static str,
        pattern: String,
        entry: String,
        reason: String,
    },
    #[error("invalid repository {repository:?} in selector object: {reason}; write a repository name without tag or digest, e.g. nginx or quay.io/prometheus/node-exporter")]
    ObjectRepository { repository: String, reason: String },
    #[error("invalid {field} {value:?} in selector object for {repository:?}: {why}")]
    ObjectField {
        field: &'static str,
        value: String,
        repository: String,
        why: &'static str,
    },
    #[error("selector object for {repository:?} selects nothing: give semver, match or newest, e.g. \"semver\": \"~1.27\"")]
    ObjectSelectsNothing { repository: String },
}

/// Reads an image-list entry as a selector when it is one.
///
/// `None`: not a selector, read it as a reference (whose own error, if any,
/// stands). `Some(Err)`: a selector with an error.
pub fn classify(entry: &str) -> Option<Result<Selector, SelectorError>> {
    let entry = entry.trim();
    let (written, repository, text) = split_selector(entry)?;
    Some(Selector::from_parts(entry, written, repository, text))
}

/// Whether `fragment` is the rest of the selector `previous`, cut off by a list
/// split on commas (`nginx:>=1.26` and `<1.28` from `nginx:>=1.26, <1.28`).
/// The caller joins the two back with ','.
pub fn continues_selector(previous: &str, fragment: &str) -> bool {
    let fragment = fragment.trim();
    split_selector(previous.trim()).is_some()
        && Reference::parse_normalized(fragment).is_err()
        && split_selector(fragment).is_none()
}

/// The newest tags of a listing, to show what is upstream when a selector
/// picks nothing: up to `count`, versions newest first, then the others.
pub fn newest_tags(tags: &[String], count: usize) -> Vec<&str> {
    sorted(tags.iter().map(String::as_str), count)
}

impl Selector {
    /// Parses an entry known to be a selector (see [`classify`]). Unlike
    /// `classify`, it reads text that would also be a reference (`nginx:1.27`)
    /// as a selector.
    pub fn parse(entry: &str) -> Result<Selector, SelectorError> {
        let entry = entry.trim();
        let (written, repository, text) =
            split_repository(entry).ok_or_else(|| SelectorError::NoRepository {
                entry: entry.to_string(),
            })?;
        Selector::from_parts(entry, written, repository, text)
    }

    fn from_parts(
        entry: &str,
        written: &str,
        repository: Reference,
        text: &str,
    ) -> Result<Selector, SelectorError> {
        let mut range_tokens = Vec::new();
        let mut options = Options::default();
        for token in text.split_whitespace() {
            match option(token) {
                Some((key, value)) => options.set(key, value, entry)?,
                None if options.any() => {
                    return Err(SelectorError::RangeAfterOption {
                        token: token.to_string(),
                        entry: entry.to_string(),
                    })
                }
                None => range_tokens.push(token),
            }
        }
        if range_tokens.is_empty() && !options.any() {
            return Err(SelectorError::Empty {
                entry: entry.to_string(),
            });
        }
        let range = match range_tokens.is_empty() {
            true => None,
            false => Some(parse_range(&range_tokens, entry)?),
        };
        let newest = match options.newest {
            Some(value) => parse_newest(value).ok_or_else(|| SelectorError::Newest {
                value: value.to_string(),
                entry: entry.to_string(),
            })?,
            None => DEFAULT_NEWEST,
        };
        let compile = |key, pattern: Option<&str>| {
            pattern
                .map(|pattern| compile_regex(key, pattern, entry))
                .transpose()
        };
        Ok(Selector {
            entry: entry.to_string(),
            written_repository: written.to_string(),
            repository,
            range,
            newest,
            matching: compile("match", options.matching)?,
            exclude: compile("exclude", options.exclude)?,
        })
    }

    /// The entry as written, trimmed.
    pub fn entry(&self) -> &str {
        &self.entry
    }

    /// The repository, normalized and without tag (`docker.io`, `library/nginx`).
    pub fn repository(&self) -> &Reference {
        &self.repository
    }

    /// The repository as written (`nginx`, `localhost:5000/team/app`).
    pub fn written_repository(&self) -> &str {
        &self.written_repository
    }

    pub fn range(&self) -> Option<&VersionReq> {
        self.range.as_ref()
    }

    /// How many tags it selects at most.
    pub fn newest(&self) -> usize {
        self.newest
    }

    pub fn match_pattern(&self) -> Option<&str> {
        self.matching.as_ref().map(Regex::as_str)
    }

    pub fn exclude_pattern(&self) -> Option<&str> {
        self.exclude.as_ref().map(Regex::as_str)
    }

    /// The tags of a listing this selects, newest first, at most `newest`.
    pub fn select<'t>(&self, tags: &'t [String]) -> Vec<&'t str> {
        let selected = tags
            .iter()
            .map(String::as_str)
            .filter(|tag| self.selects(tag));
        sorted(selected, self.newest)
    }

    fn selects(&self, tag: &str) -> bool {
        let matches = |re: &Regex| re.is_match(tag.as_bytes());
        if self.exclude.as_ref().is_some_and(matches) {
            return false;
        }
        let version = TagVersion::parse(tag);
        // With a pattern, the pattern decides which suffixes are wanted;
        // without one, only releases are.
        let wanted = match &self.matching {
            Some(re) => matches(re),
            None => version.is_some_and(|v| v.release),
        };
        match &self.range {
            Some(range) => wanted && version.is_some_and(|v| range.matches(&v.numeric())),
            None => wanted,
        }
    }

    /// The reference to warm for one selected tag, on the repository as written.
    pub fn reference_text(&self, tag: &str) -> String {
        format!("{}:{tag}", self.written_repository)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.entry)
    }
}

/// A selector written as a JSON object, where a range may hold commas freely:
/// `{"repository": "nginx", "semver": ">=1.26, <1.28", "newest": 3}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectorObject {
    pub repository: String,
    pub semver: Option<String>,
    #[serde(rename = "match")]
    pub matching: Option<String>,
    pub exclude: Option<String>,
    pub newest: Option<u64>,
}

impl SelectorObject {
    /// The text form of the selector, for [`Selector::parse`].
    pub fn to_entry(&self) -> Result<String, SelectorError> {
        self.check_repository()?;
        if self.semver.is_none() && self.matching.is_none() && self.newest.is_none() {
            return Err(SelectorError::ObjectSelectsNothing {
                repository: self.repository.clone(),
            });
        }
        let mut parts = Vec::new();
        if let Some(semver) = &self.semver {
            self.check_semver(semver)?;
            parts.push(semver.trim().to_string());
        }
        for (key, pattern) in [("match", &self.matching), ("exclude", &self.exclude)] {
            if let Some(pattern) = pattern {
                if pattern.contains(char::is_whitespace) {
                    return Err(self.field_error(
                        key,
                        pattern,
                        "a tag never holds white space, and the text form splits on it: match it with \\s",
                    ));
                }
                parts.push(format!("{key}={pattern}"));
            }
        }
        if let Some(newest) = self.newest {
            parts.push(format!("newest={newest}"));
        }
        let mut entry = format!("{}:{}", self.repository, parts.join(" "));
        // A range alone may read as a tag (`nginx:1.27`); the default, written
        // out, keeps the text a selector wherever it is read again.
        if Reference::parse_normalized(&entry).is_ok() {
            entry.push_str(&format!(" newest={DEFAULT_NEWEST}"));
        }
        Ok(entry)
    }

    fn check_repository(&self) -> Result<(), SelectorError> {
        let reason = match Reference::parse_normalized(&self.repository) {
            Err(error) => error.to_string(),
            Ok(reference) if reference.tag().is_some() => "it has a tag".to_string(),
            Ok(reference) if reference.digest().is_some() => "it has a digest".to_string(),
            Ok(_) => return Ok(()),
        };
        Err(SelectorError::ObjectRepository {
            repository: self.repository.clone(),
            reason,
        })
    }

    fn check_semver(&self, semver: &str) -> Result<(), SelectorError> {
        if semver.trim().is_empty() {
            return Err(self.field_error(
                "semver",
                semver,
                "write a version range, e.g. ~1.27, or leave the field out",
            ));
        }
        if semver
            .split_whitespace()
            .any(|token| option(token).is_some())
        {
            return Err(self.field_error(
                "semver",
                semver,
                "it holds an option: give newest, match and exclude as fields of their own",
            ));
        }
        Ok(())
    }

    fn field_error(&self, field: &'static str, value: &str, why: &'static str) -> SelectorError {
        SelectorError::ObjectField {
            field,
            value: value.to_string(),
            repository: self.repository.clone(),
            why,
        }
    }
}

/// The options of a selector as written, before they are checked.
#[derive(Default)]
struct Options<'a> {
    newest: Option<&'a str>,
    matching: Option<&'a str>,
    exclude: Option<&'a str>,
}

impl<'a> Options<'a> {
    fn set(&mut self, key: &str, value: &'a str, entry: &str) -> Result<(), SelectorError> {
        let (key, slot) = match key {
            "newest" => ("newest", &mut self.newest),
            "match" => ("match", &mut self.matching),
            "exclude" => ("exclude", &mut self.exclude),
            _ => {
                return Err(SelectorError::UnknownOption {
                    key: key.to_string(),
                    entry: entry.to_string(),
                })
            }
        };
        match slot.replace(value) {
            Some(_) => Err(SelectorError::DuplicateOption {
                key,
                entry: entry.to_string(),
            }),
            None => Ok(()),
        }
    }

    fn any(&self) -> bool {
        self.newest.is_some() || self.matching.is_some() || self.exclude.is_some()
    }
}

/// `key=value` with a key of lowercase letters; no comparator starts so.
/// Whether a word of a selector is an option (`newest=3`, `match=…`).
pub fn is_option(word: &str) -> bool {
    option(word).is_some()
}

fn option(token: &str) -> Option<(&str, &str)> {
    let (key, value) = token.split_once('=')?;
    let is_key = !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase());
    is_key.then_some((key, value))
}

/// The repository and selector text of an entry that reads as a selector: not
/// a reference, and after the repository's ':' neither empty, nor a tag, nor
/// anything with a digest's '@' (the reference's own error fits those better).
fn split_selector(entry: &str) -> Option<(&str, Reference, &str)> {
    if Reference::parse_normalized(entry).is_ok() {
        return None;
    }
    let (written, repository, text) = split_repository(entry)?;
    // Text made of tag characters only (`-bad`, `.1`) is a broken tag, and
    // tags never hold '/' or '@' (`https://github.com/org/app`,
    // `localhost:5000/Team`): the reference's own error says more.
    let tag_characters = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    let is_selector = !text.is_empty() && !tag_characters && !text.contains(['@', '/']);
    is_selector.then_some((written, repository, text))
}

/// Splits `REPOSITORY:TEXT` at the ':' after the longest prefix that is a
/// repository name without tag, so that a registry's port stays in the name.
fn split_repository(entry: &str) -> Option<(&str, Reference, &str)> {
    // A name is made of these characters only, which bounds the prefixes to
    // try: a long run of ':' must not cost a parse per ':'.
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || "._-:/[]".contains(c);
    let head_len = entry
        .find(|c| !is_name_char(c))
        .unwrap_or(entry.len())
        .min(WRITTEN_NAME_MAX_LEN + 1);
    entry[..head_len]
        .rmatch_indices(':')
        .find_map(|(colon, _)| {
            let written = &entry[..colon];
            let repository = Reference::parse_normalized(written).ok()?;
            let bare = repository.tag().is_none() && repository.digest().is_none();
            bare.then_some((written, repository, &entry[colon + 1..]))
        })
}

/// Reads the range tokens as one `VersionReq`. People write comparators apart
/// (`>=1.26 <1.28`, `>= 1.26`) where semver wants `>=1.26, <1.28`.
fn parse_range(tokens: &[&str], entry: &str) -> Result<VersionReq, SelectorError> {
    let is_operator = |piece: &str| piece.bytes().all(|b| b"<>=~^".contains(&b));
    let mut comparators = Vec::new();
    let mut operator: Option<String> = None;
    for piece in tokens
        .iter()
        .flat_map(|token| token.split(','))
        .filter(|piece| !piece.is_empty())
    {
        let piece = operator.take().unwrap_or_default() + piece;
        if is_operator(&piece) {
            operator = Some(piece);
        } else {
            comparators.push(piece);
        }
    }
    comparators.extend(operator);
    VersionReq::parse(&comparators.join(", ")).map_err(|error| SelectorError::Range {
        range: tokens.join(" "),
        entry: entry.to_string(),
        reason: error.to_string(),
    })
}

fn parse_newest(value: &str) -> Option<usize> {
    // Digits only: `+3` parses as a number, but nobody means it.
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let newest = value.parse().ok()?;
    (1..=MAX_NEWEST).contains(&newest).then_some(newest)
}

fn compile_regex(key: &'static str, pattern: &str, entry: &str) -> Result<Regex, SelectorError> {
    compiled(pattern).map_err(|reason| SelectorError::Regex {
        key,
        pattern: pattern.to_string(),
        entry: entry.to_string(),
        reason,
    })
}

/// Patterns compiled so far, and why those that do not compile do not: a
/// list often repeats one pattern over many entries, and a batch of SQS
/// messages repeats whole lists.
static COMPILED: LazyLock<Mutex<HashMap<String, Result<Regex, String>>>> =
    LazyLock::new(Mutex::default);

/// The pattern compiled, or why it is refused. A clone of a compiled
/// pattern shares its program.
fn compiled(pattern: &str) -> Result<Regex, String> {
    let cache = || COMPILED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(known) = cache().get(pattern) {
        return known.clone();
    }
    let result = compile(pattern);
    let mut cache = cache();
    if cache.len() < CACHED_PATTERNS {
        cache.insert(pattern.to_string(), result.clone());
    }
    result
}

fn compile(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .unicode(false)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
        .build()
        .map_err(|error| match error {
            regex::Error::CompiledTooBig(limit) => format!(
                "it compiles to more than {} KiB, the size limit of a pattern (each count of \
                 a repetition such as \\w{{20}} is one more copy)",
                limit >> 10
            ),
            error => {
                // The full message draws a caret under the pattern over
                // several lines, which a one-line log entry garbles: keep
                // its last line.
                let message = error.to_string();
                let last = message.lines().last().unwrap_or_default();
                let reason = last.trim_start_matches("error: ").trim_end_matches('.');
                match reason {
                    "Unicode not allowed here" => format!(
                        "{reason}: tags are ASCII, so patterns are read without Unicode \
                         classes; write the characters out, e.g. [a-z] for \\p{{Ll}}"
                    ),
                    _ => reason.to_string(),
                }
            }
        })
}

/// A tag read as `[v]MAJOR.MINOR.PATCH` with an optional suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TagVersion {
    major: u64,
    minor: u64,
    patch: u64,
    /// No suffix: `1.27.3`, not `1.27.3-alpine` or `1.27.4-rc1`.
    release: bool,
}

impl TagVersion {
    fn parse(tag: &str) -> Option<TagVersion> {
        let rest = tag.strip_prefix('v').unwrap_or(tag);
        let (major, rest) = leading_number(rest)?;
        let (minor, rest) = leading_number(rest.strip_prefix('.')?)?;
        let (patch, suffix) = leading_number(rest.strip_prefix('.')?)?;
        Some(TagVersion {
            major,
            minor,
            patch,
            release: suffix.is_empty(),
        })
    }

    fn numeric(&self) -> Version {
        Version::new(self.major, self.minor, self.patch)
    }
}

/// The digits at the start of `text` as a number (none when they overflow a
/// u64), and the rest.
fn leading_number(text: &str) -> Option<(u64, &str)> {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    Some((text[..end].parse().ok()?, &text[end..]))
}

/// Up to `count` distinct tags, newest first (see [`newest_first`]).
fn sorted<'t>(tags: impl Iterator<Item = &'t str>, count: usize) -> Vec<&'t str> {
    let mut tags: Vec<(Option<TagVersion>, &str)> =
        tags.map(|tag| (TagVersion::parse(tag), tag)).collect();
    tags.sort_by(newest_first);
    tags.dedup_by(|a, b| a.1 == b.1);
    tags.into_iter().take(count).map(|(_, tag)| tag).collect()
}

/// Versions first, by version descending, a release before its suffixed tags
/// and equal versions by text; then the other tags in descending text order.
fn newest_first(a: &(Option<TagVersion>, &str), b: &(Option<TagVersion>, &str)) -> Ordering {
    match (a.0, b.0) {
        (Some(x), Some(y)) => (y.major, y.minor, y.patch)
            .cmp(&(x.major, x.minor, x.patch))
            .then(y.release.cmp(&x.release))
            .then(a.1.cmp(b.1)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => b.1.cmp(a.1),
    }
}

#[cfg(test)]
mod tests;
