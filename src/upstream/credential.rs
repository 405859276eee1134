//! The credential of a pull-through cache rule, for listing its upstream's
//! tags: the Secrets Manager secret of the rule's `credentialArn`, with the
//! keys `username` and `accessToken`, as ECR itself reads it. Each secret is
//! read at most once per run, and its value never leaves the [`Login`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use thiserror::Error;
use tokio::sync::OnceCell;

use super::tags::Login;
use crate::aws::describe_error;
use crate::rules::Rule;

/// Reads rules' secrets, once each.
#[derive(Default)]
pub struct Credentials {
    secrets: Option<aws_sdk_secretsmanager::Client>,
    read: Mutex<HashMap<String, Arc<OnceCell<Read>>>>,
}

/// A secret as read: the login, or why there is none.
type Read = Result<Arc<Login>, CredentialError>;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CredentialError {
    #[error(
        "cannot read the credential of rule {rule} ({arn}): {reason}. Allow the caller \
         secretsmanager:GetSecretValue on it (and kms:Decrypt when the secret has its own key)"
    )]
    Read {
        rule: String,
        arn: String,
        reason: String,
    },
    #[error(
        "the credential of rule {rule} ({arn}) is not usable: {reason}. A pull-through cache \
         secret is a JSON object {{\"username\": \"...\", \"accessToken\": \"...\"}}"
    )]
    Shape {
        rule: String,
        arn: String,
        reason: String,
    },
}

impl Credentials {
    /// Without a Secrets Manager client every upstream is listed anonymously.
    pub fn new(secrets: Option<aws_sdk_secretsmanager::Client>) -> Credentials {
        Credentials {
            secrets,
            read: Mutex::default(),
        }
    }

    /// The login of a rule: none when it pulls anonymously, is not known to
    /// have a secret (a rule given with `--rule`), or has an IAM role
    /// (`customRoleArn`) rather than a secret.
    pub async fn login(&self, rule: &Rule) -> Result<Option<Arc<Login>>, CredentialError> {
        let (Some(arn), Some(secrets)) = (rule.credential().secret_arn(), &self.secrets) else {
            return Ok(None);
        };
        let cell = {
            let mut read = self.read.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(read.entry(arn.to_string()).or_default())
        };
        cell.get_or_init(|| read_secret(secrets, rule, arn))
            .await
            .clone()
            .map(Some)
    }
}

async fn read_secret(
    secrets: &aws_sdk_secretsmanager::Client,
    rule: &Rule,
    arn: &str,
) -> Result<Arc<Login>, CredentialError> {
    let answer = secrets
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|error| CredentialError::Read {
            rule: rule.to_string(),
            arn: arn.to_string(),
            reason: describe_error(&error),
        })?;
    let shape = |reason: &str| CredentialError::Shape {
        rule: rule.to_string(),
        arn: arn.to_string(),
        reason: reason.to_string(),
    };
    let text = answer
        .secret_string()
        .ok_or_else(|| shape("the secret has no string value"))?;
    // Read as a Value rather than a struct: serde's messages quote the
    // offending value, which here is the secret.
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|_| shape("the secret is not JSON"))?;
    let field = |key: &str| {
        value
            .get(key)
            .and_then(serde_json::Value::as_str)
            .filter(|text| !text.is_empty())
            .map(str::to_string)
            .ok_or_else(|| shape(&format!("it has no text \"{key}\"")))
    };
    Ok(Arc::new(Login {
        username: field("username")?,
        secret: field("accessToken")?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_secretsmanager::operation::get_secret_value::{
        GetSecretValueError, GetSecretValueOutput,
    };
    use aws_smithy_mocks::{mock, mock_client};

    const ARN: &str =
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/hub-AbCdEf";
    const TOKEN: &str = "dckr_pat_do-not-print-me";

    async fn discovered_rule(arn: &'static str) -> Rule {
        let ecr_rules = mock!(aws_sdk_ecr::Client::describe_pull_through_cache_rules).then_output(
            move || {
                aws_sdk_ecr::operation::describe_pull_through_cache_rules::DescribePullThroughCacheRulesOutput::builder()
                    .pull_through_cache_rules(
                        aws_sdk_ecr::types::PullThroughCacheRule::builder()
                            .ecr_repository_prefix("docker-hub")
                            .upstream_registry_url("registry-1.docker.io")
                            .credential_arn(arn)
                            .build(),
                    )
                    .build()
            },
        );
        let ecr = mock_client!(aws_sdk_ecr, [&ecr_rules]);
        let rules = crate::discovery::rules(&ecr).await.unwrap();
        let rule = rules.iter().next().unwrap().clone();
        rule
    }

    #[tokio::test]
    async fn a_rules_secret_is_read_once_and_never_printed() {
        let secret = mock!(aws_sdk_secretsmanager::Client::get_secret_value)
            .match_requests(|request| request.secret_id() == Some(ARN))
            .then_output(|| {
                GetSecretValueOutput::builder()
                    .secret_string(format!(
                        r#"{{"username": "warmer", "accessToken": "{TOKEN}"}}"#
                    ))
                    .build()
            });
        let client = mock_client!(aws_sdk_secretsmanager, [&secret]);
        let credentials = Credentials::new(Some(client));
        let rule = discovered_rule(ARN).await;
        let (first, second) = tokio::join!(credentials.login(&rule), credentials.login(&rule));
        let login = first.unwrap().unwrap();
        assert_eq!(login.username, "warmer");
        assert_eq!(login.secret, TOKEN);
        assert!(Arc::ptr_eq(&login, &second.unwrap().unwrap()));
        assert_eq!(secret.num_calls(), 1, "read once per run");
        assert!(!format!("{login:?}").contains(TOKEN));
    }

    #[tokio::test]
    async fn rules_without_a_secret_are_listed_anonymously() {
        let credentials = Credentials::new(None);
        let rule = discovered_rule(ARN).await;
        assert_eq!(credentials.login(&rule).await, Ok(None));
        let given = Rule::parse("docker-hub=registry-1.docker.io").unwrap();
        let secret = mock!(aws_sdk_secretsmanager::Client::get_secret_value)
            .then_output(|| GetSecretValueOutput::builder().build());
        let credentials = Credentials::new(Some(mock_client!(aws_sdk_secretsmanager, [&secret])));
        assert_eq!(credentials.login(&given).await, Ok(None));
        let role = discovered_rule("arn:aws:iam::123456789012:role/upstream-ecr").await;
        assert_eq!(credentials.login(&role).await, Ok(None));
        assert_eq!(secret.num_calls(), 0);
    }

    #[tokio::test]
    async fn an_unreadable_or_malformed_secret_says_what_to_fix_without_its_value() {
        let denied = mock!(aws_sdk_secretsmanager::Client::get_secret_value).then_error(|| {
            GetSecretValueError::generic(
                aws_sdk_secretsmanager::error::ErrorMetadata::builder()
                    .code("AccessDeniedException")
                    .message("not authorized to perform: secretsmanager:GetSecretValue")
                    .build(),
            )
        });
        let credentials = Credentials::new(Some(mock_client!(aws_sdk_secretsmanager, [&denied])));
        let rule = discovered_rule(ARN).await;
        let error = credentials.login(&rule).await.unwrap_err().to_string();
        assert!(
            error.contains("AccessDeniedException") && error.contains(ARN),
            "{error}"
        );
        assert!(
            error.contains("secretsmanager:GetSecretValue on it"),
            "{error}"
        );

        for (value, reason) in [
            (TOKEN.to_string(), "the secret is not JSON"),
            (
                format!(r#"{{"username": "warmer", "token": "{TOKEN}"}}"#),
                "it has no text \"accessToken\"",
            ),
            (
                format!(r#"{{"username": 7, "accessToken": "{TOKEN}"}}"#),
                "it has no text \"username\"",
            ),
        ] {
            let secret =
                mock!(aws_sdk_secretsmanager::Client::get_secret_value).then_output(move || {
                    GetSecretValueOutput::builder()
                        .secret_string(&value)
                        .build()
                });
            let credentials =
                Credentials::new(Some(mock_client!(aws_sdk_secretsmanager, [&secret])));
            let error = credentials.login(&rule).await.unwrap_err();
            let text = error.to_string();
            assert!(text.contains(reason), "{text}");
            assert!(text.contains("\"accessToken\": \"...\""), "{text}");
            assert!(!text.contains(TOKEN) && !format!("{error:?}").contains(TOKEN));
        }
    }
}
