//! `doctor`: what in the registry's configuration will make a first pull
//! through the cache fail, found before anything is pulled. Per pull-through
//! cache rule: its upstream credential, the registry permissions policy, the
//! repository creation template and the cache repositories that exist.
//!
//! [`registry`] reads what ECR says, [`findings`] judges it, [`policy`]
//! judges the registry permissions policy.

pub mod findings;
pub mod policy;
pub mod registry;

use serde::Serialize;
use thiserror::Error;

use crate::aws::describe_error;
use crate::plan::PlannedImage;
pub use crate::rules::Credential;
use crate::rules::Rules;

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

#[derive(Debug, Error)]
pub enum DoctorError {
    #[error(
        "cannot tell who the caller is (sts:GetCallerIdentity): {0}. Check the AWS credentials \
         (environment, ~/.aws, instance or task role) and that STS is reachable"
    )]
    Caller(String),
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

/// The caller, from STS.
pub async fn caller(sts: &aws_sdk_sts::Client) -> Result<Caller, DoctorError> {
    let output = sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|error| DoctorError::Caller(describe_error(&error)))?;
    Ok(Caller {
        account: output.account().unwrap_or_default().to_string(),
        arn: output.arn().unwrap_or_default().to_string(),
    })
}

/// Runs every check for every rule (with what is known of its credential:
/// nothing when it was given with `--rule` or `WARM_RULES`), and for the
/// images given.
pub async fn run(
    ecr: &aws_sdk_ecr::Client,
    caller: Caller,
    region: &str,
    rules: &Rules,
    images: &[PlannedImage],
) -> Report {
    let facts = registry::read(ecr, rules, images).await;
    let findings = findings::judge(&facts, &caller, region, rules, images);
    Report::new(caller, region.to_string(), findings)
}

/// The checks at the start of the Lambda function (`WARM_DOCTOR=true`): each
/// warning and error is logged; none stops the start.
pub async fn log_at_init(
    config: &aws_config::SdkConfig,
    ecr: &aws_sdk_ecr::Client,
    rules: &Rules,
    images: &[String],
) {
    let caller = match caller(&aws_sdk_sts::Client::new(config)).await {
        Ok(caller) => caller,
        Err(error) => {
            tracing::warn!(%error, "the registry checks (WARM_DOCTOR) cannot run");
            return;
        }
    };
    let region = config.region().map(ToString::to_string).unwrap_or_default();
    let planned = crate::plan::plan(images, rules);
    let report = run(ecr, caller, &region, rules, &planned).await;
    for finding in &report.findings {
        let Finding {
            check,
            subject,
            message,
            fix,
            ..
        } = finding;
        let (check, fix) = (check.name(), fix.as_deref().unwrap_or(""));
        match finding.status {
            Status::Ok => {}
            Status::Warning => tracing::warn!(check, subject, fix, "{message}"),
            Status::Error => tracing::error!(check, subject, fix, "{message}"),
        }
    }
    let Summary { ok, warning, error } = report.summary;
    tracing::info!(
        caller = report.caller.arn,
        ok,
        warning,
        error,
        "registry checks (WARM_DOCTOR) done"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_principal_names_the_caller_by_account_arn_or_role() {
        let role = Caller {
            account: "123456789012".into(),
            arn: "arn:aws:sts::123456789012:assumed-role/warmer/i-0abc".into(),
        };
        for principal in [
            "*",
            "123456789012",
            "arn:aws:iam::123456789012:root",
            "arn:aws:iam::123456789012:role/warmer",
            "arn:aws:iam::123456789012:role/service-role/warmer",
            "arn:aws:sts::123456789012:assumed-role/warmer/i-0abc",
        ] {
            assert!(role.is_named_by(principal), "{principal}");
        }
        for principal in [
            "arn:aws:iam::123456789012:role/other",
            "arn:aws:iam::210987654321:root",
            "arn:aws:iam::210987654321:role/warmer",
            "arn:aws:iam::123456789012:user/warmer",
            "Service:ecr.amazonaws.com",
        ] {
            assert!(!role.is_named_by(principal), "{principal}");
        }
        let user = Caller {
            account: "123456789012".into(),
            arn: "arn:aws:iam::123456789012:user/ci".into(),
        };
        assert!(user.is_named_by("arn:aws:iam::123456789012:user/ci"));
        assert!(!user.is_named_by("arn:aws:iam::123456789012:user/other"));
    }
}
