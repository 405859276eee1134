//! Lists of entries as people keep them: one per line or separated by commas,
//! blank lines and comments ignored. A comment starts with `#` at the start of
//! a line or after a space or tab, so that a `#` inside a selector's pattern
//! (`nginx:match=^v#1`) is part of the pattern. Image lists, `WARM_RULES` and the other
//! list settings are all read here, so that they read alike.

use serde::Deserialize;
use serde_json::Value;

use crate::selector::{self, SelectorObject};

/// The entries of a list, in order.
pub fn read_list(text: &str) -> Vec<String> {
    text.lines().flat_map(line_entries).collect()
}

/// Where the comment of a line starts, if it has one.
fn comment_start(line: &[u8]) -> Option<usize> {
    (0..line.len()).find(|&i| line[i] == b'#' && (i == 0 || matches!(line[i - 1], b' ' | b'\t')))
}

fn line_entries(line: &str) -> Vec<String> {
    let line = comment_start(line.as_bytes()).map_or(line, |start| &line[..start]);
    let mut entries: Vec<String> = Vec::new();
    for item in line.split(',') {
        // A comma inside a selector (`nginx:>=1.26, <1.28`) does not end it.
        match entries.last_mut() {
            Some(last) if selector::continues_selector(last, item) => {
                // `nginx:~1.27,newest=2` was `nginx:~1.27 newest=2`: a comma
                // only ever separated comparators, or stood in a pattern.
                let separator = match selector::is_option(item.trim()) {
                    true => " ",
                    false => ",",
                };
                last.push_str(separator);
                last.push_str(item.trim_end());
            }
            _ => entries.push(item.trim().to_string()),
        }
    }
    entries.retain(|entry| !entry.is_empty());
    entries
}

/// One entry of a list: its text, or a line that cannot be read and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListEntry {
    Text(String),
    Unreadable { input: String, error: String },
}

/// The entries a message may hold: SQS holds 256 KiB per message, about a
/// thousand references.
pub const MAX_MESSAGE_ENTRIES: usize = 1_000;
/// The entries one run plans: the configured list, or a direct invocation's.
/// Longer lists are work for several schedules or images objects.
pub const MAX_RUN_ENTRIES: usize = 25_000;

/// The entries within `max`; each one past it is an error of its own that
/// names the limit, so that nothing is dropped unsaid.
pub fn limit(entries: Vec<ListEntry>, max: usize, what: &str, advice: &str) -> Vec<ListEntry> {
    if entries.len() <= max {
        return entries;
    }
    let total = entries.len();
    entries
        .into_iter()
        .enumerate()
        .map(|(index, entry)| match (index < max, entry) {
            (true, entry) => entry,
            (false, ListEntry::Text(input) | ListEntry::Unreadable { input, .. }) => {
                ListEntry::Unreadable {
                    input,
                    error: format!(
                        "entry {} of {total} is over the limit of {max} entries {what}: {advice}",
                        index + 1
                    ),
                }
            }
        })
        .collect()
}

/// A list file as bytes: a line that is not valid UTF-8 is that line's
/// error, and every other line is read as [`read_list`] does.
pub fn read_list_bytes(bytes: &[u8]) -> Vec<ListEntry> {
    let mut entries = Vec::new();
    for (number, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = comment_start(line).map_or(line, |start| &line[..start]);
        match std::str::from_utf8(line) {
            Ok(text) => entries.extend(line_entries(text).into_iter().map(ListEntry::Text)),
            Err(error) => {
                let input = String::from_utf8_lossy(line).trim().to_string();
                let byte = line[error.valid_up_to()];
                entries.push(ListEntry::Unreadable {
                    input,
                    error: format!(
                        "line {} is not valid UTF-8 (byte 0x{byte:02x} at column {}): save the list as UTF-8",
                        number + 1,
                        error.valid_up_to() + 1
                    ),
                });
            }
        }
    }
    entries
}

/// A JSON list of entries: references and selectors as text, or selectors
/// as objects (`{"repository": "nginx", "semver": "~1.27"}`), which are read
/// into their text form.
pub fn json_entries(value: &Value) -> Result<Vec<String>, String> {
    let items = value
        .as_array()
        .ok_or("must be a list of references, selectors or selector objects")?;
    items
        .iter()
        .enumerate()
        .map(|(index, item)| match item {
            Value::String(text) => Ok(text.clone()),
            Value::Object(_) => SelectorObject::deserialize(item)
                .map_err(|error| error.to_string())
                .and_then(|object| object.to_entry().map_err(|error| error.to_string()))
                .map_err(|error| format!("[{index}]: not a selector object: {error}")),
            other => Err(format!(
                "[{index}] is {other}: give a reference or selector as text, or a selector object \
                 {{\"repository\": \"nginx\", \"semver\": \"~1.27\"}}"
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_past_a_limit_are_errors_that_name_it() {
        let entries: Vec<ListEntry> = ["a:1", "b:1", "c:1"]
            .map(|e| ListEntry::Text(e.into()))
            .into();
        let limited = limit(entries, 2, "per message", "send fewer");
        assert_eq!(limited[1], ListEntry::Text("b:1".into()));
        assert_eq!(
            limited[2],
            ListEntry::Unreadable {
                input: "c:1".into(),
                error: "entry 3 of 3 is over the limit of 2 entries per message: send fewer".into()
            }
        );
    }

    #[test]
    fn a_hash_in_a_pattern_is_not_a_comment() {
        assert_eq!(
            read_list("nginx:match=^v#1 newest=2 # the v#1 line\n#whole line\nredis:7\t# tab"),
            ["nginx:match=^v#1 newest=2", "redis:7"]
        );
        let entries = read_list_bytes(b"app:match=a#b\n  # indented comment\n");
        assert_eq!(entries, [ListEntry::Text("app:match=a#b".into())]);
    }

    #[test]
    fn reads_lists_with_comments_and_blank_lines() {
        let text =
            "# base images\nnginx:1.27\n\n  redis:7  # cache, warm\r\nalpine,busybox\n#quay.io/x\n";
        assert_eq!(
            read_list(text),
            ["nginx:1.27", "redis:7", "alpine", "busybox"]
        );
    }

    #[test]
    fn a_comma_inside_a_selector_does_not_end_it() {
        assert_eq!(
            read_list(
                "nginx:>=1.26, <1.28 newest=10, redis:7\nnginx:~1.27,newest=2,alpine\n\
                 nginx:match=^1\\.2\\d{1,3}$,nginx:>=1.26,<1.28"
            ),
            [
                "nginx:>=1.26, <1.28 newest=10",
                "redis:7",
                "nginx:~1.27 newest=2",
                "alpine",
                "nginx:match=^1\\.2\\d{1,3}$",
                "nginx:>=1.26,<1.28"
            ]
        );
        for selector in [
            "nginx:>=1.26, <1.28 newest=10",
            "nginx:~1.27 newest=2",
            "nginx:match=^1\\.2\\d{1,3}$",
            "nginx:>=1.26,<1.28",
        ] {
            assert!(
                matches!(selector::classify(selector), Some(Ok(_))),
                "{selector}"
            );
        }
    }

    proptest::proptest! {
        /// Any bytes read as a list: no panic, and never more entries, nor
        /// more text, than the list held.
        #[test]
        fn any_list_is_read_within_its_own_size(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let entries = read_list_bytes(&bytes);
            proptest::prop_assert!(entries.len() <= bytes.len());
            let text: usize = entries
                .iter()
                .map(|entry| match entry {
                    ListEntry::Text(text) => text.len(),
                    ListEntry::Unreadable { input, .. } => input.len(),
                })
                .sum();
            proptest::prop_assert!(text <= bytes.len() * 3);
            let text = String::from_utf8_lossy(&bytes);
            proptest::prop_assert!(read_list(&text).len() <= text.len());
        }
    }
}
