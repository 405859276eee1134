//! Pull-through cache rules, and the mapping of an upstream reference onto the
//! cache repository that ECR pulls it through.

use std::fmt;

use thiserror::Error;

use crate::host::{self, private_ecr_host, private_ecr_registry};
use crate::list::read_list;
use crate::reference::{is_host_and_port, Reference};

/// The prefix of a rule that caches at the root of the registry.
pub const ROOT: &str = "ROOT";

/// One pull-through cache rule: repositories under `ecr_prefix` are pulled
/// from `upstream_registry`, with `upstream_prefix` (when not ROOT) standing
/// for the prefix in the upstream path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    ecr_prefix: String,
    upstream_registry: String,
    upstream_prefix: Option<String>,
    credential: Credential,
}

/// What is known of the credential with which a rule pulls from its upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Credential {
    /// The rule was given (`--rule`, `WARM_RULES`), not read from ECR.
    #[default]
    Unknown,
    /// The upstream is pulled anonymously.
    None,
    /// A Secrets Manager secret (`credentialArn`) or an IAM role (`customRoleArn`).
    Given { arn: String },
}

impl Credential {
    /// The Secrets Manager secret of the credential, when it is one.
    pub fn secret_arn(&self) -> Option<&str> {
        match self {
            Credential::Given { arn } if arn.contains(":secretsmanager:") => Some(arn),
            _ => None,
        }
    }
}

/// The rules of a registry, in a stable order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    rules: Vec<Rule>,
    own: Option<OwnRegistry>,
}

/// The caller's registry, as far as it is known. A reference written against
/// a private ECR registry is pulled through the caller's own: when it names
/// another, its path would be looked up in the wrong registry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OwnRegistry {
    account: Option<String>,
    region: String,
}

/// Where a reference is pulled through the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping<'a> {
    pub cache_repository: String,
    pub rule: &'a Rule,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RuleError {
    #[error("invalid rule {0:?}: expected PREFIX=UPSTREAM, e.g. docker-hub=registry-1.docker.io or my-app=registry-1.docker.io/upstream-app")]
    Syntax(String),
    #[error("invalid repository prefix {prefix:?} in rule {rule:?}: use ROOT or 2 to 30 lowercase letters, digits, '.', '_', '-' and '/', starting and ending with a letter or digit")]
    Prefix { prefix: String, rule: String },
    #[error("invalid upstream registry {upstream:?} in rule {rule:?}: expected a host name with an optional port, e.g. registry-1.docker.io")]
    Upstream { upstream: String, rule: String },
    #[error("invalid upstream repository prefix {prefix:?} in rule {rule:?}: use 2 to 30 lowercase letters, digits, '.', '_', '-' and '/'; it needs an ECR prefix other than ROOT")]
    UpstreamPrefix { prefix: String, rule: String },
    #[error("pull-through cache prefix {0:?} is given twice: each prefix maps to one upstream")]
    Duplicate(String),
    #[error("could not read the pull-through cache rules from ECR: {0}. Check that ECR is reachable and that the caller may call ecr:DescribePullThroughCacheRules, or give the rules with --rule PREFIX=UPSTREAM (WARM_RULES in Lambda)")]
    Discovery(String),
}

/// Why a reference has no cache repository.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{0}")]
pub struct NoRule(String);

impl Rule {
    /// Parses `PREFIX=UPSTREAM[/UPSTREAM_PREFIX]`, the syntax of `--rule` and `WARM_RULES`.
    pub fn parse(text: &str) -> Result<Rule, RuleError> {
        let text = text.trim();
        let Some((prefix, upstream)) = text.split_once('=') else {
            return Err(RuleError::Syntax(text.to_string()));
        };
        let (host, upstream_prefix) = match strip_scheme(upstream.trim()).split_once('/') {
            Some((host, path)) => (host, Some(path)),
            None => (strip_scheme(upstream.trim()), None),
        };
        Rule::new(prefix.trim(), host, upstream_prefix).map_err(|error| error.in_rule(text))
    }

    /// Builds a rule from its parts, as ECR describes them.
    pub(crate) fn new(
        ecr_prefix: &str,
        upstream_registry: &str,
        upstream_prefix: Option<&str>,
    ) -> Result<Rule, RuleError> {
        if ecr_prefix != ROOT && !is_repository_prefix(ecr_prefix) {
            return Err(RuleError::Prefix {
                prefix: ecr_prefix.to_string(),
                rule: String::new(),
            });
        }
        let upstream_registry = strip_scheme(upstream_registry).trim_end_matches('/');
        if !is_host_and_port(upstream_registry) {
            return Err(RuleError::Upstream {
                upstream: upstream_registry.to_string(),
                rule: String::new(),
            });
        }
        let upstream_prefix = upstream_prefix.filter(|p| *p != ROOT && !p.is_empty());
        if let Some(prefix) = upstream_prefix {
            if ecr_prefix == ROOT || !is_repository_prefix(prefix) {
                return Err(RuleError::UpstreamPrefix {
                    prefix: prefix.to_string(),
                    rule: String::new(),
                });
            }
        }
        Ok(Rule {
            ecr_prefix: ecr_prefix.to_string(),
            upstream_registry: upstream_registry.to_ascii_lowercase(),
            upstream_prefix: upstream_prefix.map(str::to_string),
            credential: Credential::Unknown,
        })
    }

    pub fn ecr_prefix(&self) -> &str {
        &self.ecr_prefix
    }

    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// The rule, with what is known of its credential.
    pub fn with_credential(self, credential: Credential) -> Rule {
        Rule { credential, ..self }
    }

    fn is_root(&self) -> bool {
        self.ecr_prefix == ROOT
    }

    /// The cache repository for an upstream path, when this rule covers it.
    fn cache_repository(&self, upstream_path: &str) -> Option<String> {
        let rest = match &self.upstream_prefix {
            Some(prefix) => upstream_path
                .strip_prefix(prefix.as_str())?
                .strip_prefix('/')?,
            None => upstream_path,
        };
        Some(if self.is_root() {
            rest.to_string()
        } else {
            format!("{}/{}", self.ecr_prefix, rest)
        })
    }

    /// The upstream registry and path of one of this rule's cache
    /// repositories: the inverse of the mapping onto the cache.
    pub fn upstream_of(&self, cache_repository: &str) -> Option<(String, String)> {
        let rest = match self.is_root() {
            true => cache_repository,
            false => cache_repository
                .strip_prefix(self.ecr_prefix.as_str())?
                .strip_prefix('/')?,
        };
        let path = match &self.upstream_prefix {
            Some(prefix) => format!("{prefix}/{rest}"),
            None => rest.to_string(),
        };
        Some((self.upstream_registry.clone(), path))
    }

    /// The path itself, when it is a cache repository of this rule.
    fn covers_cache_path(&self, path: &str) -> bool {
        self.is_root()
            || path
                .strip_prefix(self.ecr_prefix.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.ecr_prefix, self.upstream_registry)?;
        if let Some(prefix) = &self.upstream_prefix {
            write!(f, "/{prefix}")?;
        }
        Ok(())
    }
}

impl RuleError {
    pub(crate) fn in_rule(self, text: &str) -> RuleError {
        let rule = text.to_string();
        match self {
            RuleError::Prefix { prefix, .. } => RuleError::Prefix { prefix, rule },
            RuleError::Upstream { upstream, .. } => RuleError::Upstream { upstream, rule },
            RuleError::UpstreamPrefix { prefix, .. } => RuleError::UpstreamPrefix { prefix, rule },
            other => other,
        }
    }
}

impl Rules {
    pub fn new(mut rules: Vec<Rule>) -> Result<Rules, RuleError> {
        rules.sort_by(|a, b| a.ecr_prefix.cmp(&b.ecr_prefix));
        if let Some(pair) = rules
            .windows(2)
            .find(|w| w[0].ecr_prefix == w[1].ecr_prefix)
        {
            return Err(RuleError::Duplicate(pair[0].ecr_prefix.clone()));
        }
        Ok(Rules { rules, own: None })
    }

    /// Parses rules given one by one (`--rule`, repeatable).
    pub fn parse_each<S: AsRef<str>>(texts: &[S]) -> Result<Rules, RuleError> {
        let rules = texts
            .iter()
            .map(|text| Rule::parse(text.as_ref()))
            .collect::<Result<_, _>>()?;
        Rules::new(rules)
    }

    /// Parses a list kept like the image lists (`WARM_RULES`): one rule per
    /// line or comma, blank lines and `#` comments ignored.
    pub fn parse_list(text: &str) -> Result<Rules, RuleError> {
        Rules::parse_each(&read_list(text))
    }

    /// The caller's own registry: its account (ECR's DescribeRegistry) and
    /// Region (the SDK configuration). A reference written against another
    /// private ECR registry is then an error on its line.
    pub fn with_own_registry(mut self, account: &str, region: &str) -> Rules {
        self.own = Some(OwnRegistry {
            account: Some(account.to_string()),
            region: region.to_ascii_lowercase(),
        });
        self
    }

    /// Only the caller's Region is known (as for `plan --rule`, which makes
    /// no AWS call): a reference written against a private ECR registry of
    /// another Region is then an error on its line.
    pub fn with_own_region(mut self, region: &str) -> Rules {
        self.own = Some(OwnRegistry {
            account: None,
            region: region.to_ascii_lowercase(),
        });
        self
    }

    pub fn iter(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter()
    }

    /// Whether a repository of the private registry is under a rule's prefix.
    pub fn covers_cache_repository(&self, path: &str) -> bool {
        self.rules.iter().any(|rule| rule.covers_cache_path(path))
    }

    /// Maps a normalized reference onto the cache repository that serves it.
    /// When several rules match, the one with the longest upstream prefix wins.
    /// A reference written against a private ECR registry that no rule has as
    /// upstream keeps its path, when a rule's prefix starts it and the
    /// registry is the caller's own (as far as [`Rules::with_own_registry`] or
    /// [`Rules::with_own_region`] tell).
    pub fn map(&self, reference: &Reference) -> Result<Mapping<'_>, NoRule> {
        let host = host::api_host(reference.registry());
        let path = upstream_path(reference);
        let by_upstream = self
            .rules
            .iter()
            .filter(|rule| host::api_host(&rule.upstream_registry) == host)
            .filter_map(|rule| Some((rule, rule.cache_repository(&path)?)))
            .max_by_key(|(rule, _)| {
                let specificity = rule.upstream_prefix.as_ref().map_or(0, String::len);
                (
                    specificity,
                    !rule.is_root(),
                    std::cmp::Reverse(&rule.ecr_prefix),
                )
            });
        if let Some((rule, cache_repository)) = by_upstream {
            return Ok(Mapping {
                cache_repository,
                rule,
            });
        }
        if let Some((account, region)) = private_ecr_registry(&host) {
            if let Some(refusal) = self
                .own
                .as_ref()
                .and_then(|own| own.refuse(&host, account, region))
            {
                return Err(refusal);
            }
            let by_prefix = self
                .rules
                .iter()
                .filter(|rule| rule.covers_cache_path(&path))
                .max_by_key(|rule| (!rule.is_root(), rule.ecr_prefix.len()));
            if let Some(rule) = by_prefix {
                return Ok(Mapping {
                    cache_repository: path,
                    rule,
                });
            }
        }
        Err(self.no_rule(reference, &host))
    }

    fn no_rule(&self, reference: &Reference, host: &str) -> NoRule {
        let registry = reference.registry();
        if registry.is_empty() {
            return NoRule(format!(
                "{reference} names no registry that a pull-through cache rule could match: \
                 its first part is not a valid host name"
            ));
        }
        let existing = if self.rules.is_empty() {
            "there are no rules".to_string()
        } else {
            let list: Vec<String> = self.rules.iter().map(Rule::to_string).collect();
            format!("rules: {}", list.join(", "))
        };
        let mut reason = format!("no pull-through cache rule for registry {registry} ({existing})");
        if let Some(rule) = self
            .rules
            .iter()
            .find(|rule| host::api_host(&rule.upstream_registry) == host)
        {
            reason.push_str(&format!(
                "; rule {rule} does not cover repository {}",
                reference.repository()
            ));
        } else if !registry.contains(['.', ':']) && registry.to_lowercase() != registry {
            reason.push_str(&format!(
                "; Docker reads {registry} as a registry host because it has uppercase \
                 letters: repository names must be lowercase"
            ));
        } else {
            reason.push_str(&format!(
                "; add one with --rule PREFIX={host} or create it in ECR"
            ));
        }
        NoRule(reason)
    }
}

/// The repository path upstream. Docker Hub serves official images only under
/// `library/`, also when the reference was written against registry-1.docker.io.
fn upstream_path(reference: &Reference) -> String {
    let path = reference.repository();
    if reference.is_docker_hub() && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_string()
    }
}

fn strip_scheme(url: &str) -> &str {
    url.strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url)
}

impl OwnRegistry {
    /// Why a reference to the private registry `host` of `account` and
    /// `region` cannot be pulled through the caller's; None when it can.
    fn refuse(&self, host: &str, account: &str, region: &str) -> Option<NoRule> {
        match &self.account {
            Some(own) if own != account || self.region != region => Some(NoRule(format!(
                "{host} is another account's or Region's registry; this caller's is {}: \
                 warm it from that account and Region, or pull it through a rule whose \
                 upstream is {host}",
                private_ecr_host(own, &self.region)
            ))),
            None if self.region != region => Some(NoRule(format!(
                "{host} is a registry of Region {region}; this caller is in Region {}: \
                 warm it from {region}, or pull it through a rule whose upstream is {host}",
                self.region
            ))),
            _ => None,
        }
    }
}

/// ECR's repository prefix grammar: 2 to 30 characters of
/// `[a-z0-9]+([._-][a-z0-9]+)*` components separated by '/'.
fn is_repository_prefix(prefix: &str) -> bool {
    (2..=30).contains(&prefix.len())
        && prefix.split('/').all(|component| {
            !component.is_empty()
                && component.split(['.', '_', '-']).all(|run| {
                    !run.is_empty()
                        && run
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                })
        })
}

#[cfg(test)]
mod tests;
