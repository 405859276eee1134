//! The credential of a pull-through cache rule, for asking its upstream
//! directly: the Secrets Manager secret of the rule's `credentialArn`, with
//! the keys `username` and `accessToken`, as ECR itself reads it. A secret
//! read is kept for a while (15 minutes: a token rotated since is picked up
//! soon after); a read that failed is not kept, so the next call reads again.
//! A secret's value never leaves the [`Login`].

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use thiserror::Error;

use crate::aws::describe_error;
use crate::rules::Rule;

/// How long a secret read is used before it is read again.
const KEPT_FOR: Duration = Duration::from_secs(15 * 60);

/// A username and secret for an upstream registry; Debug prints neither.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Login {
    pub username: String,
    pub secret: String,
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("username", &"<redacted>")
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Where the login for a rule's upstream comes from.
pub trait LoginSource: Send + Sync {
    /// The login of a rule, or none to ask anonymously. The read ends by
    /// `deadline`.
    fn login(
        &self,
        rule: &Rule,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<Option<Arc<Login>>, CredentialError>> + Send;
}

/// Every upstream asked anonymously.
#[derive(Debug, Default, Clone, Copy)]
pub struct Anonymous;

impl LoginSource for Anonymous {
    async fn login(
        &self,
        _: &Rule,
        _: Option<Instant>,
    ) -> Result<Option<Arc<Login>>, CredentialError> {
        Ok(None)
    }
}

/// Reads rules' secrets, and keeps what was read for a while.
#[derive(Default)]
pub struct Credentials {
    secrets: Option<aws_sdk_secretsmanager::Client>,
    /// One slot per secret: concurrent logins wait for one read.
    read: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Kept>>>>>,
}

/// A login as read, and when.
struct Kept {
    login: Arc<Login>,
    read_at: tokio::time::Instant,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CredentialError {
    #[error(
        "cannot read the credential of rule {rule} ({arn}): {reason}. {}",
        read_hint(*.retryable)
    )]
    Read {
        rule: String,
        arn: String,
        reason: String,
        retryable: bool,
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
    #[error(
        "the deadline passed before the credential of rule {rule} ({arn}) was read: give the \
         run more time"
    )]
    Deadline { rule: String, arn: String },
}

fn read_hint(retryable: bool) -> &'static str {
    match retryable {
        true => "This may pass: it is read again at the next attempt",
        false => {
            "Allow the caller secretsmanager:GetSecretValue on it (and kms:Decrypt when the \
             secret has its own key)"
        }
    }
}

impl CredentialError {
    /// Whether reading again later could succeed without anything being
    /// changed: throttling, faults of the service, the network, the deadline.
    pub fn is_retryable(&self) -> bool {
        match self {
            CredentialError::Read { retryable, .. } => *retryable,
            CredentialError::Shape { .. } => false,
            CredentialError::Deadline { .. } => true,
        }
    }
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
    pub async fn login(
        &self,
        rule: &Rule,
        deadline: Option<Instant>,
    ) -> Result<Option<Arc<Login>>, CredentialError> {
        let (Some(arn), Some(secrets)) = (rule.credential().secret_arn(), &self.secrets) else {
            return Ok(None);
        };
        let slot = {
            let mut read = self.read.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(read.entry(arn.to_string()).or_default())
        };
        let mut slot = slot.lock().await;
        if let Some(kept) = slot
            .as_ref()
            .filter(|kept| kept.read_at.elapsed() < KEPT_FOR)
        {
            return Ok(Some(Arc::clone(&kept.login)));
        }
        let login = read_secret(secrets, rule, arn, deadline).await?;
        *slot = Some(Kept {
            login: Arc::clone(&login),
            read_at: tokio::time::Instant::now(),
        });
        Ok(Some(login))
    }
}

impl LoginSource for Credentials {
    async fn login(
        &self,
        rule: &Rule,
        deadline: Option<Instant>,
    ) -> Result<Option<Arc<Login>>, CredentialError> {
        Credentials::login(self, rule, deadline).await
    }
}

async fn read_secret(
    secrets: &aws_sdk_secretsmanager::Client,
    rule: &Rule,
    arn: &str,
    deadline: Option<Instant>,
) -> Result<Arc<Login>, CredentialError> {
    let past_deadline = || CredentialError::Deadline {
        rule: rule.to_string(),
        arn: arn.to_string(),
    };
    let left = match deadline {
        Some(deadline) => deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .ok_or_else(past_deadline)?,
        None => Duration::MAX,
    };
    let call = secrets.get_secret_value().secret_id(arn).send();
    let answer = match tokio::time::timeout(left, call).await {
        Err(_) => return Err(past_deadline()),
        Ok(answer) => answer,
    };
    let answer = answer.map_err(|error| {
        let code = error.as_service_error().and_then(|e| e.code());
        CredentialError::Read {
            rule: rule.to_string(),
            arn: arn.to_string(),
            reason: describe_error(&error),
            retryable: crate::retry::is_retryable(&error, code)
                || code == Some("InternalServiceError"),
        }
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
        let rules = crate::rules::Rules::discover(&ecr).await.unwrap();
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
        let (first, second) = tokio::join!(
            credentials.login(&rule, None),
            credentials.login(&rule, None)
        );
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
        assert_eq!(credentials.login(&rule, None).await, Ok(None));
        let given = Rule::parse("docker-hub=registry-1.docker.io").unwrap();
        let secret = mock!(aws_sdk_secretsmanager::Client::get_secret_value)
            .then_output(|| GetSecretValueOutput::builder().build());
        let credentials = Credentials::new(Some(mock_client!(aws_sdk_secretsmanager, [&secret])));
        assert_eq!(credentials.login(&given, None).await, Ok(None));
        let role = discovered_rule("arn:aws:iam::123456789012:role/upstream-ecr").await;
        assert_eq!(credentials.login(&role, None).await, Ok(None));
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
        let error = credentials
            .login(&rule, None)
            .await
            .unwrap_err()
            .to_string();
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
            let error = credentials.login(&rule, None).await.unwrap_err();
            let text = error.to_string();
            assert!(text.contains(reason), "{text}");
            assert!(text.contains("\"accessToken\": \"...\""), "{text}");
            assert!(!text.contains(TOKEN) && !format!("{error:?}").contains(TOKEN));
        }
    }
}
