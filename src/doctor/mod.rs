//! `doctor`: what in the registry's configuration will make a first pull
//! through the cache fail, found before anything is pulled. Per pull-through
//! cache rule: its upstream credential, the registry permissions policy, the
//! repository creation template and the cache repositories that exist.
//!
//! [`registry`] reads what ECR says, [`findings`] judges it, [`policy`]
//! judges the registry permissions policy.

pub mod findings;
pub mod policy;
pub mod pulls;
pub mod registry;
mod report;

use thiserror::Error;

use crate::aws::describe_error;
use crate::plan::PlannedImage;
use crate::rules::Rules;

pub use report::{Caller, Check, Finding, Report, Status, Summary};

#[derive(Debug, Error)]
pub enum DoctorError {
    #[error(
        "cannot tell who the caller is (sts:GetCallerIdentity): {0}. Check the AWS credentials \
         (environment, ~/.aws, instance or task role) and that STS is reachable"
    )]
    Caller(String),
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
