//! The plan: each input line, parsed and mapped onto its cache repository.
//! A bad line gets its own error; it never stops the others.

use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};

use crate::list::ListEntry;
use crate::reference::Reference;
use crate::rules::Rules;
use crate::selector::{self, Selector};

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
    /// Where the entry came from.
    pub source: Source,
    /// Why an image that ECS pulls is left alone: it does not go through a
    /// pull-through cache, so warming could not help it. Not a failure.
    pub not_warmed: Option<String>,
    /// The selector entry, as written, that the image was selected by (or
    /// that this entry is, before its tags are listed).
    pub selector: Option<String>,
    /// A selector whose tags upstream are not listed yet: `plan` shows it
    /// as it is, `warm` lists them first ([`crate::upstream`]).
    pub unresolved: Option<Arc<Selector>>,
    /// The code and hint of an entry that failed before any pull (a
    /// selector's); other entries get theirs from the warm.
    pub failure: Option<PlanFailure>,
    /// For a digest the cache did not hold: the upstream tag that points at
    /// it, pulled in its place ([`crate::pin`]).
    pub via_tag: Option<String>,
}

/// Why an entry failed while it was planned, as the warm report says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanFailure {
    pub code: &'static str,
    pub hint: &'static str,
    /// Whether it may work later (an upstream that did not answer).
    pub retryable: bool,
    /// Held back rather than failed: the image is `skipped`, not tried.
    pub skipped: bool,
}

/// Where an entry came from: the list, what ECS runs, or an event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum Source {
    /// The list given: arguments, files, the function's settings, a request.
    #[default]
    List,
    /// A task definition of this service's deployments.
    EcsService { cluster: String, service: String },
    /// The latest ACTIVE revision of this task definition family.
    EcsFamily { family: String, revision: i32 },
    /// An ECS event: a task definition registered, a task that failed to pull.
    Event,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::List => f.write_str("list"),
            Source::EcsService { cluster, service } => write!(f, "ecs-service:{cluster}/{service}"),
            Source::EcsFamily { family, revision } => write!(f, "ecs-family:{family}:{revision}"),
            Source::Event => f.write_str("event"),
        }
    }
}

impl Serialize for Source {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
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
    source: &'a Source,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_warmed: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    selector: Option<&'a str>,
}

impl PlannedImage {
    pub fn new(input: &str, rules: &Rules) -> PlannedImage {
        let input = input.trim().to_string();
        let reference = match Reference::parse_normalized(&input) {
            Ok(reference) => reference,
            Err(error) => {
                return match selector::classify(&input) {
                    Some(selector) => PlannedImage::of_selector(input, selector, rules),
                    None => PlannedImage::failed(input, error.to_string()),
                }
            }
        };
        let (target, error) = Target::of(rules, &reference);
        PlannedImage {
            reference: Some(reference),
            target,
            error,
            ..PlannedImage::failed(input, String::new())
        }
    }

    /// An entry that cannot be warmed, and why.
    fn failed(input: String, error: String) -> PlannedImage {
        PlannedImage {
            input,
            reference: None,
            target: None,
            error: Some(error),
            source: Source::List,
            not_warmed: None,
            selector: None,
            unresolved: None,
            failure: None,
            via_tag: None,
        }
    }

    /// A selector entry: mapped onto its rule by its repository, its tags
    /// not listed yet.
    fn of_selector(
        input: String,
        selector: Result<Selector, selector::SelectorError>,
        rules: &Rules,
    ) -> PlannedImage {
        let selector = match selector {
            Ok(selector) => selector,
            Err(error) => {
                return PlannedImage {
                    selector: Some(input.clone()),
                    failure: Some(PlanFailure {
                        code: "InvalidSelector",
                        hint: "write a selector as REPOSITORY:[RANGE] [newest=N] [match=REGEX] \
                               [exclude=REGEX], e.g. nginx:~1.27 or nginx:~1.27 match=-alpine$ \
                               newest=3",
                        retryable: false,
                        skipped: false,
                    }),
                    ..PlannedImage::failed(input, error.to_string())
                }
            }
        };
        let (target, error) = Target::of(rules, selector.repository());
        PlannedImage {
            target,
            error,
            selector: Some(input.clone()),
            unresolved: Some(Arc::new(selector)),
            ..PlannedImage::failed(input, String::new())
        }
    }

    /// An image a selector selected: its reference, planned as any other,
    /// that remembers the selector.
    pub fn selected(
        reference: &str,
        selector: &Selector,
        source: &Source,
        rules: &Rules,
    ) -> PlannedImage {
        PlannedImage {
            selector: Some(selector.entry().to_string()),
            source: source.clone(),
            ..PlannedImage::new(reference, rules)
        }
    }

    /// A selector that selected no image: its entry, with the failure.
    pub fn unselected(&self, failure: PlanFailure, error: String) -> PlannedImage {
        PlannedImage {
            target: self.target.clone(),
            selector: self.selector.clone(),
            unresolved: self.unresolved.clone(),
            source: self.source.clone(),
            failure: Some(failure),
            ..PlannedImage::failed(self.input.clone(), error)
        }
    }

    /// An image as ECS pulls it, written in a task definition or an event.
    /// ECS pulls it through a cache only when it names the private registry
    /// under a rule's prefix; any other image is left alone, with the reason,
    /// since warming a cache that ECS does not use could not help it.
    pub fn pulled_by_ecs(input: &str, source: Source, rules: &Rules) -> PlannedImage {
        let mut image = PlannedImage::new(input, rules);
        image.source = source;
        let reason = match (&image.reference, &image.error) {
            (None, Some(error)) => Some(format!("not a reference the warmer can read: {error}")),
            (Some(reference), _) if !crate::host::is_private_ecr_host(reference.registry()) => {
                Some(format!(
                    "ECS pulls it from {} itself, not through a pull-through cache: only an \
                     image written against this account's ECR registry under a rule's prefix \
                     is pulled through the cache",
                    reference.registry()
                ))
            }
            (Some(reference), Some(_))
                if !rules.covers_cache_repository(reference.repository()) =>
            {
                Some(format!(
                    "{} is a repository of the registry itself, under no pull-through cache \
                     rule's prefix: ECS pulls it as it is",
                    reference.repository()
                ))
            }
            (Some(_), Some(error)) => Some(format!("not pulled through the cache: {error}")),
            _ => None,
        };
        if reason.is_some() {
            image.target = None;
            image.error = None;
            image.not_warmed = reason;
        }
        image
    }

    /// Parsed and mapped: ready to be warmed.
    pub fn is_ready(&self) -> bool {
        self.target.is_some() && self.error.is_none() && self.unresolved.is_none()
    }

    /// Neither ready, nor deliberately left alone, nor a selector still to
    /// be listed: an entry that needs fixing.
    pub fn is_failure(&self) -> bool {
        self.error.is_some() || (self.target.is_none() && self.not_warmed.is_none())
    }

    pub fn record(&self) -> PlanRecord<'_> {
        let reference = self.reference.as_ref();
        let named = reference.or(self.unresolved.as_deref().map(Selector::repository));
        PlanRecord {
            input: &self.input,
            valid: named.is_some(),
            error: self.error.as_deref(),
            reference: reference.map(Reference::to_string),
            registry: named.map(Reference::registry),
            repository: named.map(Reference::repository),
            tag: reference.and_then(Reference::tag),
            digest: reference.and_then(Reference::digest),
            cache_repository: self.target.as_ref().map(|t| t.cache_repository.as_str()),
            rule: self.target.as_ref().map(|t| t.rule.as_str()),
            source: &self.source,
            not_warmed: self.not_warmed.as_deref(),
            selector: self.selector.as_deref(),
        }
    }
}

impl Target {
    /// Where the rules map a reference or a selector's repository, or why
    /// they do not.
    fn of(rules: &Rules, reference: &Reference) -> (Option<Target>, Option<String>) {
        match rules.map(reference) {
            Ok(mapping) => (
                Some(Target {
                    cache_repository: mapping.cache_repository,
                    rule: mapping.rule.to_string(),
                    rule_prefix: mapping.rule.ecr_prefix().to_string(),
                }),
                None,
            ),
            Err(no_rule) => (None, Some(no_rule.to_string())),
        }
    }
}

impl PlannedImage {
    /// Plans one entry of a list; a line that could not be read is its own failure.
    pub fn from_entry(entry: ListEntry, rules: &Rules) -> PlannedImage {
        match entry {
            ListEntry::Text(text) => PlannedImage::new(&text, rules),
            ListEntry::Unreadable { input, error } => PlannedImage::failed(input, error),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_planned_by_their_repository_and_left_unresolved() {
        let rules =
            Rules::parse_each(&["docker-hub=registry-1.docker.io", "team=localhost:5000"]).unwrap();
        let inputs: Vec<String> = [
            "nginx:~1.27 match=-alpine$ newest=5",
            "localhost:5000/team/app:^2",
            "nginx:~1.27 newest=0",
            "ghcr.io/org/app:~1",
        ]
        .map(String::from)
        .into();
        let planned = plan(&inputs, &rules);
        let selector = &planned[0];
        assert!(!selector.is_ready() && !selector.is_failure());
        assert!(selector.unresolved.is_some() && selector.reference.is_none());
        let record = serde_json::to_value(selector.record()).unwrap();
        assert_eq!(
            record,
            serde_json::json!({
                "input": "nginx:~1.27 match=-alpine$ newest=5", "valid": true, "error": null,
                "reference": null, "registry": "docker.io", "repository": "library/nginx",
                "cache_repository": "docker-hub/library/nginx",
                "rule": "docker-hub=registry-1.docker.io", "source": "list",
                "selector": "nginx:~1.27 match=-alpine$ newest=5"
            })
        );
        assert_eq!(
            planned[1].target.as_ref().unwrap().cache_repository,
            "team/team/app"
        );
        let malformed = &planned[2];
        assert!(malformed.is_failure() && malformed.unresolved.is_none());
        assert_eq!(malformed.failure.as_ref().unwrap().code, "InvalidSelector");
        assert!(malformed.error.as_deref().unwrap().contains("newest"));
        let unmapped = &planned[3];
        assert!(unmapped.is_failure() && unmapped.target.is_none());
        assert!(unmapped.error.as_deref().unwrap().contains("ghcr.io"));
    }

    #[test]
    fn a_line_that_is_not_utf8_is_its_own_error() {
        let entries =
            crate::list::read_list_bytes(b"nginx:1.27\nredis:\xff7\n# caf\xe9\nalpine, busybox\n");
        let rules = Rules::parse_each(&["docker-hub=registry-1.docker.io"]).unwrap();
        let planned: Vec<PlannedImage> = entries
            .into_iter()
            .map(|e| PlannedImage::from_entry(e, &rules))
            .collect();
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
                "cache_repository": "docker-hub/library/nginx", "rule": "docker-hub=registry-1.docker.io",
                "source": "list"
            })
        );
    }

    #[test]
    fn sources_read_as_the_json_says_them() {
        let sources = [
            (Source::List, "list"),
            (
                Source::EcsService {
                    cluster: "prod".into(),
                    service: "web".into(),
                },
                "ecs-service:prod/web",
            ),
            (
                Source::EcsFamily {
                    family: "batch".into(),
                    revision: 7,
                },
                "ecs-family:batch:7",
            ),
            (Source::Event, "event"),
        ];
        for (source, text) in sources {
            assert_eq!(serde_json::to_value(&source).unwrap(), text);
        }
    }

    #[test]
    fn ecs_images_are_warmed_only_when_ecs_pulls_them_through_the_cache() {
        let rules = Rules::parse_each(&["docker-hub=registry-1.docker.io"])
            .unwrap()
            .with_own_registry("123456789012", "us-east-1");
        let host = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
        let plan = |image: &str| PlannedImage::pulled_by_ecs(image, Source::Event, &rules);

        let cached = plan(&format!("{host}/docker-hub/library/nginx:1.27.2"));
        assert!(cached.is_ready() && cached.not_warmed.is_none());
        assert_eq!(cached.source, Source::Event);

        let upstream = plan("nginx:1.27");
        assert!(!upstream.is_ready() && !upstream.is_failure());
        assert!(
            upstream
                .not_warmed
                .as_deref()
                .unwrap()
                .starts_with("ECS pulls it from docker.io itself"),
            "{upstream:?}"
        );
        let own = plan(&format!("{host}/team/app:1.0"));
        assert!(own
            .not_warmed
            .as_deref()
            .unwrap()
            .starts_with("team/app is a repository of the registry itself"));
        let elsewhere =
            plan("210987654321.dkr.ecr.us-east-1.amazonaws.com/docker-hub/library/nginx:1");
        assert!(elsewhere
            .not_warmed
            .as_deref()
            .unwrap()
            .contains("another account's or Region's registry"));
        let invalid = plan("Not/Valid:!");
        assert!(invalid.not_warmed.is_some() && !invalid.is_failure());
        let record = serde_json::to_value(upstream.record()).unwrap();
        assert_eq!(record["source"], "event");
        assert_eq!(record["cache_repository"], serde_json::Value::Null);
        assert!(record["not_warmed"].is_string());
    }
}
