//! What `doctor` found, per check and subject, and its summary: the
//! `doctor --output json` document.

use serde::Serialize;

/// How one finding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warning,
    Error,
}

/// Which check made a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    UpstreamCredential,
    RegistryPolicy,
    CreationTemplate,
    CacheRepository,
    /// What an upstream that counts pulls has left of its limit.
    UpstreamPulls,
    /// An input image that no rule covers, or that does not parse.
    Image,
}

impl Check {
    pub fn name(self) -> &'static str {
        match self {
            Check::UpstreamCredential => "upstream-credential",
            Check::RegistryPolicy => "registry-policy",
            Check::CreationTemplate => "creation-template",
            Check::CacheRepository => "cache-repository",
            Check::UpstreamPulls => "upstream-pulls",
            Check::Image => "image",
        }
    }
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Error => "error",
        }
    }
}

/// One thing found: what was checked, about what, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub check: Check,
    pub status: Status,
    /// The rule's prefix, a cache repository, or an input image.
    pub subject: String,
    pub message: String,
    pub fix: Option<String>,
}

/// Who the checks were judged for: the permissions that count are this caller's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Caller {
    pub account: String,
    pub arn: String,
}

/// The `doctor --output json` document.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub caller: Caller,
    pub region: String,
    pub summary: Summary,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub ok: usize,
    pub warning: usize,
    pub error: usize,
}

impl Caller {
    /// Whether a principal of a policy statement names this caller: everyone
    /// (`*`), its account (`123456789012`, `arn:aws:iam::123456789012:root`),
    /// its own ARN, or the role whose session it is.
    pub fn is_named_by(&self, principal: &str) -> bool {
        if principal == "*" || principal == self.arn || principal == self.account {
            return true;
        }
        let Some((head, resource)) = principal.split_once(":iam::") else {
            return false;
        };
        let Some((account, name)) = resource.split_once(':') else {
            return false;
        };
        if !head.starts_with("arn:") || account != self.account {
            return false;
        }
        if name == "root" {
            return true;
        }
        // arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION is a session of
        // arn:aws:iam::ACCOUNT:role/[PATH/]ROLE.
        let role = self
            .arn
            .split_once(":assumed-role/")
            .and_then(|(_, rest)| rest.split('/').next());
        match (role, name.strip_prefix("role/")) {
            (Some(role), Some(path)) => path.rsplit('/').next() == Some(role),
            _ => false,
        }
    }
}

impl Report {
    pub fn new(caller: Caller, region: String, findings: Vec<Finding>) -> Report {
        let mut summary = Summary::default();
        for finding in &findings {
            match finding.status {
                Status::Ok => summary.ok += 1,
                Status::Warning => summary.warning += 1,
                Status::Error => summary.error += 1,
            }
        }
        Report {
            caller,
            region,
            summary,
            findings,
        }
    }
}
