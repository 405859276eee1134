//! Why an upstream registry could not be asked: what went wrong, with what
//! the registry said, and what to do about it.

use std::fmt;

use thiserror::Error;

/// Why a repository's tags or a manifest could not be read upstream.
#[derive(Debug, Error)]
#[error("cannot {asked} of {repository} on {registry}: {problem}")]
pub struct RegistryError {
    pub registry: String,
    pub repository: String,
    pub asked: Asked,
    pub problem: Problem,
}

/// What was asked of the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    Tags,
    /// The manifest of a tag or digest.
    Manifest(String),
}

impl fmt::Display for Asked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Asked::Tags => f.write_str("list the tags"),
            Asked::Manifest(reference) => write!(f, "read the manifest {reference}"),
        }
    }
}

/// What went wrong, with what the registry said, and what to do about it.
#[derive(Debug, Error)]
pub enum Problem {
    #[error("{answer}: {}", unauthorized_hint(*.anonymous))]
    Unauthorized { answer: String, anonymous: bool },
    #[error("{answer}: check the repository path and its spelling (Docker Hub's official images are library/<name>, e.g. library/nginx)")]
    NotFound { answer: String },
    #[error("{answer}{}: the registry's rate limit; try again later, or give the rule a credential with a higher limit", tried(*.attempts, *.retry_after))]
    Throttled {
        answer: String,
        attempts: u32,
        retry_after: Option<u64>,
    },
    #[error("{answer}{}: check that the registry is up and that there is a network route to it (a Lambda function in a private subnet without a NAT gateway cannot reach the internet: list tags from where there is a route)", tried(*.attempts, *.retry_after))]
    Unavailable {
        answer: String,
        attempts: u32,
        retry_after: Option<u64>,
    },
    #[error("{0}: this is not a registry API v2 answer; check the registry's name and its upstream endpoint URL")]
    Protocol(String),
    #[error("{request} answered more than {}, the most read of {what}: this is not a registry API v2 answer; check the registry's name and its upstream endpoint URL", size(*.limit))]
    TooLarge {
        request: String,
        what: &'static str,
        limit: usize,
    },
    #[error("{0}: the credential goes only to the registry's own origin and to the token realm it names, and only over https when the registry is https; check the registry's upstream endpoint URL")]
    Insecure(String),
    #[error("the deadline passed before the registry answered: give the run more time")]
    Deadline,
    #[error("{0}")]
    Invalid(String),
}

impl RegistryError {
    /// Whether a later attempt could succeed without anything being changed.
    pub fn is_retryable(&self) -> bool {
        self.problem.is_retryable()
    }

    /// A short name for reports: unauthorized, not-found, throttled,
    /// unavailable, protocol, too-large, insecure, deadline or invalid.
    pub fn kind(&self) -> &'static str {
        self.problem.kind()
    }
}

impl Problem {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Problem::Throttled { .. } | Problem::Unavailable { .. } | Problem::Deadline
        )
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Problem::Unauthorized { .. } => "unauthorized",
            Problem::NotFound { .. } => "not-found",
            Problem::Throttled { .. } => "throttled",
            Problem::Unavailable { .. } => "unavailable",
            Problem::Protocol(_) => "protocol",
            Problem::TooLarge { .. } => "too-large",
            Problem::Insecure(_) => "insecure",
            Problem::Deadline => "deadline",
            Problem::Invalid(_) => "invalid",
        }
    }
}

fn unauthorized_hint(anonymous: bool) -> &'static str {
    if anonymous {
        "the registry does not let this repository be listed anonymously: give its pull-through cache rule a credential (a Secrets Manager secret ecr-pullthroughcache/… with the keys username and accessToken); Docker Hub answers the same for a repository that does not exist, so check its path too"
    } else {
        "check the credential, the rule's Secrets Manager secret ecr-pullthroughcache/… with the keys username and accessToken (a wrong username, an expired or revoked token, or one without read access to this repository); Docker Hub answers the same for a repository that does not exist, so check its path too"
    }
}

fn tried(attempts: u32, retry_after: Option<u64>) -> String {
    let plural = if attempts == 1 { "" } else { "s" };
    let mut note = format!(" after {attempts} attempt{plural}");
    if let Some(seconds) = retry_after {
        note += &format!(", Retry-After {seconds} s");
    }
    note
}

/// "8 MiB", "64 KiB".
fn size(bytes: usize) -> String {
    match bytes {
        bytes if bytes >= 1 << 20 && bytes % (1 << 20) == 0 => format!("{} MiB", bytes >> 20),
        bytes => format!("{} KiB", bytes >> 10),
    }
}
