//! The registry permissions policy, judged for pull-through caches: on which
//! paths under a rule's prefix it lets the caller create cache repositories
//! (`ecr:CreateRepository`) and import images (`ecr:BatchImportUpstreamImage`),
//! and what it denies.
//!
//! A first pull needs both actions from the registry policy or from the
//! caller's IAM policy. When the registry policy grants them on a narrower path
//! than the rule's prefix, ECR answers "repository … does not exist" for every
//! other image of the rule, unless IAM grants them: that is the trap judged
//! here. Conditions are not evaluated (a statement counts as if it had none);
//! statements with NotAction, NotResource or NotPrincipal are named, not judged.

use serde_json::Value;
use thiserror::Error;

use super::report::Caller;
use crate::rules::ROOT;

pub const CREATE: &str = "ecr:CreateRepository";
pub const IMPORT: &str = "ecr:BatchImportUpstreamImage";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error(
        "the registry permissions policy is not valid JSON ({0}): read it with `aws ecr \
         get-registry-policy` and put a valid one back with `aws ecr put-registry-policy`"
    )]
    Json(String),
    #[error(
        "the registry permissions policy has no Statement (an object or a list of objects): \
         read it with `aws ecr get-registry-policy`, then fix it with `aws ecr put-registry-policy`"
    )]
    NoStatement,
}

/// A parsed registry permissions policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    statements: Vec<Statement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Statement {
    /// The Sid, or `statement N` (from 1).
    label: String,
    deny: bool,
    /// AWS principals as written, `*` for everyone; other kinds (Service, Federated) as `Kind:value`.
    principals: Vec<String>,
    actions: Vec<String>,
    resources: Vec<String>,
    /// The first of NotAction, NotResource, NotPrincipal it uses: not judged.
    unjudged: Option<&'static str>,
}

/// Where the policy stands on one rule's prefix, for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixJudgement {
    pub create: Grant,
    pub import: Grant,
    pub denials: Vec<Denial>,
    /// Statements about the prefix that name other principals: not counted.
    pub other_principals: Vec<String>,
    /// Statements the doctor does not judge, and why.
    pub unjudged: Vec<String>,
}

/// How much of a prefix an action is allowed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// Every repository under the prefix.
    Whole,
    /// Only these paths (`repository/ecr-public/docker/*`).
    Part(Vec<String>),
    /// Nowhere under the prefix: the caller's IAM policy alone decides.
    Nothing,
}

/// A Deny statement that concerns a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub statement: String,
    pub paths: Vec<String>,
}

/// What the policy means for the first pull into one cache repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every action needed is allowed here.
    Allowed,
    /// The policy allows none of the actions needed anywhere under the
    /// prefix: the caller's IAM policy decides.
    Silent,
    /// Actions the policy allows elsewhere under the prefix but not here.
    Missing(Vec<&'static str>),
    /// A Deny statement covers this repository.
    Denied(Denial),
}

impl Policy {
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let document: Value =
            serde_json::from_str(text).map_err(|error| PolicyError::Json(error.to_string()))?;
        let statements = match document.get("Statement") {
            Some(Value::Array(list)) => list.iter().collect::<Vec<_>>(),
            Some(one @ Value::Object(_)) => vec![one],
            _ => return Err(PolicyError::NoStatement),
        };
        let statements = statements
            .into_iter()
            .enumerate()
            .filter_map(|(i, value)| Statement::parse(i, value))
            .collect();
        Ok(Policy { statements })
    }

    /// The policy's stand on `prefix` (an ECR repository prefix, or ROOT).
    pub fn judge_prefix(&self, prefix: &str, scope: &Scope<'_>) -> PrefixJudgement {
        let under = prefix_path(prefix);
        let mut judgement = PrefixJudgement {
            create: Grant::Nothing,
            import: Grant::Nothing,
            denials: Vec::new(),
            other_principals: Vec::new(),
            unjudged: Vec::new(),
        };
        let (mut create, mut import) = (Reach::default(), Reach::default());
        for statement in &self.statements {
            let paths: Vec<String> = statement
                .paths(scope)
                .into_iter()
                .filter(|path| intersects(path, &under))
                .collect();
            if paths.is_empty() {
                continue;
            }
            if let Some(key) = statement.unjudged {
                judgement
                    .unjudged
                    .push(format!("{} (it uses {key})", statement.label));
                continue;
            }
            let (creates, imports) = (statement.names(CREATE), statement.names(IMPORT));
            if !creates && !imports {
                continue;
            }
            if !statement.names_caller(scope.caller) {
                judgement.other_principals.push(format!(
                    "{} ({})",
                    statement.label,
                    statement.principals.join(", ")
                ));
                continue;
            }
            if statement.deny {
                judgement.denials.push(Denial {
                    statement: statement.label.clone(),
                    paths,
                });
                continue;
            }
            for (names, reach) in [(creates, &mut create), (imports, &mut import)] {
                if names {
                    reach.add(&paths, &under);
                }
            }
        }
        judgement.create = create.grant();
        judgement.import = import.grant();
        judgement
    }

    /// What the policy means for the first pull into `repository` under
    /// `prefix`; one that `exists` already needs no `ecr:CreateRepository`.
    pub fn judge_repository(
        &self,
        repository: &str,
        exists: bool,
        prefix: &PrefixJudgement,
        scope: &Scope<'_>,
    ) -> Verdict {
        let path = format!("repository/{repository}");
        let needed: &[(&'static str, &Grant)] = match exists {
            true => &[(IMPORT, &prefix.import)],
            false => &[(CREATE, &prefix.create), (IMPORT, &prefix.import)],
        };
        let applies = |statement: &&Statement, action: &str| {
            statement.unjudged.is_none()
                && statement.names(action)
                && statement.names_caller(scope.caller)
                && statement
                    .paths(scope)
                    .iter()
                    .any(|pattern| glob(pattern, &path))
        };
        for (action, _) in needed {
            if let Some(statement) = self
                .statements
                .iter()
                .find(|statement| statement.deny && applies(statement, action))
            {
                return Verdict::Denied(Denial {
                    statement: statement.label.clone(),
                    paths: statement
                        .paths(scope)
                        .into_iter()
                        .filter(|pattern| glob(pattern, &path))
                        .collect(),
                });
            }
        }
        if needed.iter().all(|(_, grant)| **grant == Grant::Nothing) {
            return Verdict::Silent;
        }
        let missing: Vec<&'static str> = needed
            .iter()
            .filter(|(action, grant)| {
                **grant != Grant::Nothing
                    && !self
                        .statements
                        .iter()
                        .any(|statement| !statement.deny && applies(&statement, action))
            })
            .map(|(action, _)| *action)
            .collect();
        match missing.is_empty() {
            true => Verdict::Allowed,
            false => Verdict::Missing(missing),
        }
    }
}

/// The registry whose policy it is, and who asks.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub caller: &'a Caller,
    pub region: &'a str,
    /// The registry's account.
    pub account: &'a str,
}

/// `repository/PREFIX/`: what every cache repository of the prefix starts with.
pub fn prefix_path(prefix: &str) -> String {
    match prefix {
        ROOT => "repository/".to_string(),
        _ => format!("repository/{prefix}/"),
    }
}

/// The paths an action is allowed on, as they add up over statements.
#[derive(Debug, Default)]
struct Reach {
    whole: bool,
    part: Vec<String>,
}

impl Reach {
    fn add(&mut self, paths: &[String], under: &str) {
        for path in paths {
            if covers(path, under) {
                self.whole = true;
            } else if !self.part.contains(path) {
                self.part.push(path.clone());
            }
        }
    }

    fn grant(self) -> Grant {
        match (self.whole, self.part.is_empty()) {
            (true, _) => Grant::Whole,
            (false, false) => Grant::Part(self.part),
            (false, true) => Grant::Nothing,
        }
    }
}

impl Statement {
    fn parse(index: usize, value: &Value) -> Option<Statement> {
        let label = value
            .get("Sid")
            .and_then(Value::as_str)
            .filter(|sid| !sid.is_empty())
            .map_or_else(|| format!("statement {}", index + 1), str::to_string);
        let deny = match value.get("Effect").and_then(Value::as_str) {
            Some("Allow") => false,
            Some("Deny") => true,
            _ => return None,
        };
        let unjudged = ["NotAction", "NotResource", "NotPrincipal"]
            .into_iter()
            .find(|key| value.get(*key).is_some());
        Some(Statement {
            label,
            deny,
            principals: principals(value.get("Principal")),
            actions: strings(value.get("Action")),
            // A statement without Resource (where NotResource stands) is judged on the whole registry.
            resources: match value.get("Resource") {
                Some(resource) => strings(Some(resource)),
                None => vec!["*".to_string()],
            },
            unjudged,
        })
    }

    fn names(&self, action: &str) -> bool {
        let action = action.to_ascii_lowercase();
        self.actions
            .iter()
            .any(|pattern| glob(&pattern.to_ascii_lowercase(), &action))
    }

    fn names_caller(&self, caller: &Caller) -> bool {
        self.principals
            .iter()
            .any(|principal| caller.is_named_by(principal))
    }

    /// The resources in this registry, as paths relative to it
    /// (`repository/ecr-public/*`, `*`); those of other Regions, accounts or
    /// services are left out.
    fn paths(&self, scope: &Scope<'_>) -> Vec<String> {
        self.resources
            .iter()
            .filter_map(|resource| {
                if resource == "*" {
                    return Some("*".to_string());
                }
                let parts: Vec<&str> = resource.splitn(6, ':').collect();
                let [arn, _partition, service, region, account, path] = parts[..] else {
                    return None;
                };
                let here = glob(arn, "arn")
                    && glob(service, "ecr")
                    && glob(region, scope.region)
                    && glob(account, scope.account);
                here.then(|| path.to_string())
            })
            .collect()
    }
}

/// The principals of a statement: `"*"`, `{"AWS": "arn" | ["arn", ...]}`, other kinds.
fn principals(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(text)) => vec![text.clone()],
        Some(Value::Object(kinds)) => kinds
            .iter()
            .flat_map(|(kind, names)| {
                strings(Some(names))
                    .into_iter()
                    .map(move |name| match kind.as_str() {
                        "AWS" => name,
                        _ => format!("{kind}:{name}"),
                    })
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(text)) => vec![text.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// For each length k of `text`'s prefixes, whether `pattern` (IAM wildcards:
/// `*` any run of characters, `?` one character) matches `text[..k]` whole.
fn prefix_matches(pattern: &str, text: &str) -> Vec<bool> {
    let text: Vec<char> = text.chars().collect();
    // reach[k]: the pattern read so far matches text[..k].
    let mut reach = vec![false; text.len() + 1];
    reach[0] = true;
    for p in pattern.chars() {
        let mut next = vec![false; text.len() + 1];
        match p {
            '*' => {
                let mut seen = false;
                for k in 0..=text.len() {
                    seen |= reach[k];
                    next[k] = seen;
                }
            }
            _ => {
                for k in 0..text.len() {
                    next[k + 1] = reach[k] && (p == '?' || p == text[k]);
                }
            }
        }
        reach = next;
    }
    reach
}

/// `pattern` matches the whole of `text`.
fn glob(pattern: &str, text: &str) -> bool {
    prefix_matches(pattern, text)
        .last()
        .copied()
        .unwrap_or(false)
}

/// `pattern` matches every path that starts with `under`.
fn covers(pattern: &str, under: &str) -> bool {
    let head = pattern.trim_end_matches('*');
    head.len() < pattern.len() && prefix_matches(head, under).contains(&true)
}

/// `pattern` matches some path that starts with `under`.
fn intersects(pattern: &str, under: &str) -> bool {
    let chars: Vec<(usize, char)> = pattern.char_indices().collect();
    (0..=chars.len()).any(|i| {
        let end = chars.get(i).map_or(pattern.len(), |(at, _)| *at);
        let matches = prefix_matches(&pattern[..end], under);
        // The pattern's head reads all of `under`, or a `*` takes over inside it.
        matches[matches.len() - 1]
            || (chars.get(i).is_some_and(|(_, c)| *c == '*') && matches.contains(&true))
    })
}

#[cfg(test)]
mod tests;
