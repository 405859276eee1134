//! The plan: each input line, parsed and mapped onto its cache repository.
//! A bad line gets its own error; it never stops the others.

use serde::Serialize;

use crate::reference::Reference;
use crate::rules::Rules;

/// One input line and what it will be warmed as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedImage {
    /// The line as written, trimmed.
    pub input: String,
    /// The normalized reference, when the line parses.
    pub reference: Option<Reference>,
    /// Where it is pulled through the cache, when a rule matches.
    pub target: Option<Target>,
    /// Why the line cannot be warmed.
    pub error: Option<String>,
}

/// A cache repository and the rule that leads there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub cache_repository: String,
    /// The rule in `PREFIX=UPSTREAM` form.
    pub rule: String,
    /// The rule's ECR prefix, to count results per upstream.
    pub rule_prefix: String,
}

/// The `plan --output json` record of DESIGN.md.
#[derive(Debug, Serialize)]
pub struct PlanRecord<'a> {
    input: &'a str,
    valid: bool,
    error: Option<&'a str>,
    reference: Option<String>,
    registry: Option<&'a str>,
    repository: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<&'a str>,
    cache_repository: Option<&'a str>,
    rule: Option<&'a str>,
}

impl PlannedImage {
    pub fn new(input: &str, rules: &Rules) -> PlannedImage {
        let input = input.trim().to_string();
        let reference = match Reference::parse_normalized(&input) {
            Ok(reference) => reference,
            Err(error) => {
                return PlannedImage {
                    input,
                    reference: None,
                    target: None,
                    error: Some(error.to_string()),
                }
            }
        };
        let (target, error) = match rules.map(&reference) {
            Ok(mapping) => (
                Some(Target {
                    cache_repository: mapping.cache_repository,
                    rule: mapping.rule.to_string(),
                    rule_prefix: mapping.rule.ecr_prefix().to_string(),
                }),
                None,
            ),
            Err(no_rule) => (None, Some(no_rule.to_string())),
        };
        PlannedImage {
            input,
            reference: Some(reference),
            target,
            error,
        }
    }

    /// Parsed and mapped: ready to be warmed.
    pub fn is_ready(&self) -> bool {
        self.target.is_some()
    }

    pub fn record(&self) -> PlanRecord<'_> {
        let reference = self.reference.as_ref();
        PlanRecord {
            input: &self.input,
            valid: reference.is_some(),
            error: self.error.as_deref(),
            reference: reference.map(Reference::to_string),
            registry: reference.map(Reference::registry),
            repository: reference.map(Reference::repository),
            tag: reference.and_then(Reference::tag),
            digest: reference.and_then(Reference::digest),
            cache_repository: self.target.as_ref().map(|t| t.cache_repository.as_str()),
            rule: self.target.as_ref().map(|t| t.rule.as_str()),
        }
    }
}

/// Plans every image, in input order.
pub fn plan(inputs: &[String], rules: &Rules) -> Vec<PlannedImage> {
    inputs
        .iter()
        .map(|input| PlannedImage::new(input, rules))
        .collect()
}

/// The entries of a list as people keep them: one per line (or separated by
/// commas), blank lines and `#` comments ignored. Image lists and `WARM_RULES`
/// are both read with it, so that they read alike.
pub fn read_list(text: &str) -> Vec<String> {
    text.lines().flat_map(line_entries).collect()
}

fn line_entries(line: &str) -> Vec<String> {
    let line = line.split_once('#').map_or(line, |(before, _)| before);
    line.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

/// One entry of a list: its text, or a line that cannot be read and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListEntry {
    Text(String),
    Unreadable { input: String, error: String },
}

impl ListEntry {
    pub fn plan(self, rules: &Rules) -> PlannedImage {
        match self {
            ListEntry::Text(text) => PlannedImage::new(&text, rules),
            ListEntry::Unreadable { input, error } => PlannedImage {
                input,
                reference: None,
                target: None,
                error: Some(error),
            },
        }
    }
}

/// A list file as bytes: a line that is not valid UTF-8 is that line's
/// error, and every other line is read as [`read_list`] does.
pub fn read_list_bytes(bytes: &[u8]) -> Vec<ListEntry> {
    let mut entries = Vec::new();
    for (number, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = match line.iter().position(|&b| b == b'#') {
            Some(comment) => &line[..comment],
            None => line,
        };
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_line_that_is_not_utf8_is_its_own_error() {
        let entries = read_list_bytes(b"nginx:1.27\nredis:\xff7\n# caf\xe9\nalpine, busybox\n");
        let rules = Rules::parse_each(&["docker-hub=registry-1.docker.io"]).unwrap();
        let planned: Vec<PlannedImage> = entries.into_iter().map(|e| e.plan(&rules)).collect();
        let inputs: Vec<&str> = planned.iter().map(|p| p.input.as_str()).collect();
        assert_eq!(
            inputs,
            ["nginx:1.27", "redis:\u{fffd}7", "alpine", "busybox"],
            "an invalid byte in a comment is ignored"
        );
        assert_eq!(
            planned[1].error.as_deref(),
            Some("line 2 is not valid UTF-8 (byte 0xff at column 7): save the list as UTF-8")
        );
        assert!(planned[1].reference.is_none());
        assert!(planned[0].is_ready() && planned[2].is_ready() && planned[3].is_ready());
    }

    #[test]
    fn a_bad_line_is_reported_beside_good_ones() {
        let rules = Rules::parse_each(&["docker-hub=registry-1.docker.io"]).unwrap();
        let inputs: Vec<String> = ["nginx:1.27", "Nginx", "quay.io/a/b"]
            .map(String::from)
            .into();
        let planned = plan(&inputs, &rules);
        assert_eq!(planned.len(), 3);
        assert!(planned[0].is_ready());
        assert_eq!(
            planned[0].target.as_ref().unwrap().cache_repository,
            "docker-hub/library/nginx"
        );
        assert!(planned[1].reference.is_none());
        assert!(planned[1]
            .error
            .as_deref()
            .unwrap()
            .contains("must be lowercase"));
        assert!(planned[2].reference.is_some() && !planned[2].is_ready());
    }

    #[test]
    fn json_record_has_the_documented_fields() {
        let rules = Rules::parse_each(&["docker-hub=registry-1.docker.io"]).unwrap();
        let planned = PlannedImage::new(" nginx:1.27 ", &rules);
        let json = serde_json::to_value(planned.record()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "input": "nginx:1.27", "valid": true, "error": null,
                "reference": "docker.io/library/nginx:1.27", "registry": "docker.io",
                "repository": "library/nginx", "tag": "1.27",
                "cache_repository": "docker-hub/library/nginx", "rule": "docker-hub=registry-1.docker.io"
            })
        );
    }
}
