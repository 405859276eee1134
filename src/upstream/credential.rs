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
}

impl LoginSource for Credentials {
    /// None when the rule pulls anonymously, is not known to have a secret
    /// (a rule given with `--rule`), or has an IAM role (`customRoleArn`)
    /// rather than a secret.
    async fn login(
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
    let call = secrets.get_secret_value().secret_id(arn).send();
    let answer = match deadline {
        None => call.await,
        Some(deadline) => {
            let left = deadline
                .checked_duration_since(Instant::now())
                .filter(|left| !left.is_zero())
                .ok_or_else(past_deadline)?;
            tokio::time::timeout(left, call)
                .await
                .map_err(|_| past_deadline())?
        }
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
    use aws_sdk_secretsmanager::config::retry::RetryConfig;
    use aws_sdk_secretsmanager::operation::get_secret_value::{
        GetSecretValueError, GetSecretValueOutput,
    };
    use aws_smithy_mocks::{mock, mock_client, Rule as MockRule, RuleMode};

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

    /// A client that leaves retries to the caller, as each read is tried
    /// once per call here.
    fn client(rule: &MockRule) -> aws_sdk_secretsmanager::Client {
        mock_client!(
            aws_sdk_secretsmanager,
            RuleMode::Sequential,
            [rule],
            |config| { config.retry_config(RetryConfig::disabled()) }
        )
    }

    fn secret() -> GetSecretValueOutput {
        GetSecretValueOutput::builder()
            .secret_string(format!(
                r#"{{"username": "warmer", "accessToken": "{TOKEN}"}}"#
            ))
            .build()
    }

    fn failure(code: &str, message: &str) -> GetSecretValueError {
        GetSecretValueError::generic(
            aws_sdk_secretsmanager::error::ErrorMetadata::builder()
                .code(code)
                .message(message)
                .build(),
        )
    }

    #[tokio::test]
    async fn a_read_that_failed_is_retryable_when_it_may_pass_and_is_read_again() {
        let reads = mock!(aws_sdk_secretsmanager::Client::get_secret_value)
            .sequence()
            .error(|| failure("ThrottlingException", "Rate exceeded"))
            .http_status(503, None)
            .output(secret)
            .build();
        let credentials = Credentials::new(Some(client(&reads)));
        let rule = discovered_rule(ARN).await;

        let throttled = credentials.login(&rule, None).await.unwrap_err();
        assert!(throttled.is_retryable(), "{throttled}");
        let message = throttled.to_string();
        assert!(
            message.contains("ThrottlingException") && message.contains("read again"),
            "{message}"
        );
        let unavailable = credentials.login(&rule, None).await.unwrap_err();
        assert!(unavailable.is_retryable(), "{unavailable}");

        let login = credentials.login(&rule, None).await.unwrap().unwrap();
        assert_eq!(login.secret, TOKEN);
        assert_eq!(reads.num_calls(), 3);
    }

    #[tokio::test]
    async fn a_refused_read_is_not_retryable_and_not_kept_either() {
        let reads = mock!(aws_sdk_secretsmanager::Client::get_secret_value)
            .sequence()
            .error(|| failure("AccessDeniedException", "not authorized"))
            .output(secret)
            .build();
        let credentials = Credentials::new(Some(client(&reads)));
        let rule = discovered_rule(ARN).await;
        let denied = credentials.login(&rule, None).await.unwrap_err();
        assert!(!denied.is_retryable(), "{denied}");
        // The permission, since granted, works without a new sandbox.
        let login = credentials.login(&rule, None).await.unwrap().unwrap();
        assert_eq!(login.username, "warmer");
        assert_eq!(reads.num_calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_login_is_kept_for_15_minutes_then_read_again() {
        let reads = mock!(aws_sdk_secretsmanager::Client::get_secret_value)
            .sequence()
            .output(secret)
            .repeatedly()
            .build();
        let credentials = Credentials::new(Some(client(&reads)));
        let rule = discovered_rule(ARN).await;
        let first = credentials.login(&rule, None).await.unwrap().unwrap();
        tokio::time::advance(Duration::from_secs(14 * 60)).await;
        let kept = credentials.login(&rule, None).await.unwrap().unwrap();
        assert!(Arc::ptr_eq(&first, &kept));
        assert_eq!(reads.num_calls(), 1);
        tokio::time::advance(Duration::from_secs(2 * 60)).await;
        let read_again = credentials.login(&rule, None).await.unwrap().unwrap();
        assert!(!Arc::ptr_eq(&first, &read_again));
        assert_eq!(reads.num_calls(), 2);
    }

    #[tokio::test]
    async fn no_read_starts_after_the_deadline() {
        let reads = mock!(aws_sdk_secretsmanager::Client::get_secret_value).then_output(secret);
        let credentials = Credentials::new(Some(client(&reads)));
        let rule = discovered_rule(ARN).await;
        let error = credentials
            .login(&rule, Some(Instant::now()))
            .await
            .unwrap_err();
        assert!(
            matches!(error, CredentialError::Deadline { .. }),
            "{error:?}"
        );
        assert!(error.is_retryable());
        assert!(error.to_string().contains(ARN), "{error}");
        assert_eq!(reads.num_calls(), 0);
    }
}
