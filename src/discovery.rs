//! What ECR says of the registry: its pull-through cache rules, with their
//! credentials, and the caller's own account. The rules themselves, parsed and
//! mapped, are [`crate::rules`].

use crate::aws::describe_error;
use crate::rules::{Credential, Rule, RuleError, Rules};

/// Reads every rule of the registry from ECR, with its credential.
pub async fn rules(ecr: &aws_sdk_ecr::Client) -> Result<Rules, RuleError> {
    let mut pages = ecr
        .describe_pull_through_cache_rules()
        .into_paginator()
        .items()
        .send();
    let mut rules = Vec::new();
    while let Some(item) = pages.next().await {
        let item = item.map_err(|error| RuleError::Discovery(describe_error(&error)))?;
        let prefix = item.ecr_repository_prefix().unwrap_or_default();
        let upstream = item.upstream_registry_url().unwrap_or_default();
        let credential = match item.credential_arn().or(item.custom_role_arn()) {
            Some(arn) => Credential::Given {
                arn: arn.to_string(),
            },
            None => Credential::None,
        };
        let rule = Rule::new(prefix, upstream, item.upstream_repository_prefix())
            .map_err(|error| error.in_rule(&format!("{prefix}={upstream}")))?;
        rules.push(rule.with_credential(credential));
    }
    Rules::new(rules)
}

/// The caller's own registry, looked up: the account from ECR's
/// DescribeRegistry, the Region from the configuration. Without
/// `ecr:DescribeRegistry`, only the Region is checked.
pub async fn for_caller(rules: Rules, ecr: &aws_sdk_ecr::Client, region: &str) -> Rules {
    match ecr.describe_registry().send().await {
        Ok(output) => match output.registry_id() {
            Some(account) => rules.with_own_registry(account, region),
            None => rules.with_own_region(region),
        },
        Err(error) => {
            tracing::info!(
                error = %describe_error(&error),
                "the caller's account is unknown (ecr:DescribeRegistry); references to private \
                 registries are checked for their Region only"
            );
            rules.with_own_region(region)
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecr::operation::describe_pull_through_cache_rules::{
        DescribePullThroughCacheRulesError, DescribePullThroughCacheRulesOutput,
    };
    use aws_sdk_ecr::types::PullThroughCacheRule;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    use super::*;
    use crate::reference::Reference;

    const SECRET: &str =
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/hub-AbCdEf";

    #[tokio::test]
    async fn discovers_rules_from_every_page() {
        let first = mock!(aws_sdk_ecr::Client::describe_pull_through_cache_rules)
            .match_requests(|req| req.next_token().is_none())
            .then_output(|| {
                DescribePullThroughCacheRulesOutput::builder()
                    .pull_through_cache_rules(
                        PullThroughCacheRule::builder()
                            .ecr_repository_prefix("docker-hub")
                            .upstream_registry_url("registry-1.docker.io")
                            .credential_arn(SECRET)
                            .build(),
                    )
                    .next_token("page-2")
                    .build()
            });
        let second = mock!(aws_sdk_ecr::Client::describe_pull_through_cache_rules)
            .match_requests(|req| req.next_token() == Some("page-2"))
            .then_output(|| {
                DescribePullThroughCacheRulesOutput::builder()
                    .pull_through_cache_rules(
                        PullThroughCacheRule::builder()
                            .ecr_repository_prefix("my-app")
                            .upstream_registry_url("registry-1.docker.io")
                            .upstream_repository_prefix("upstream-app")
                            .build(),
                    )
                    .build()
            });
        let ecr = mock_client!(aws_sdk_ecr, RuleMode::MatchAny, [&first, &second]);
        let rules = rules(&ecr).await.unwrap();
        let listed: Vec<String> = rules.iter().map(Rule::to_string).collect();
        assert_eq!(
            listed,
            [
                "docker-hub=registry-1.docker.io",
                "my-app=registry-1.docker.io/upstream-app"
            ]
        );
        assert_eq!((first.num_calls(), second.num_calls()), (1, 1));
        let credentials: Vec<&Credential> = rules.iter().map(Rule::credential).collect();
        assert_eq!(
            credentials,
            [&Credential::Given { arn: SECRET.into() }, &Credential::None]
        );
        assert_eq!(credentials[0].secret_arn(), Some(SECRET));
        assert_eq!(
            Rule::parse("docker-hub=registry-1.docker.io")
                .unwrap()
                .credential(),
            &Credential::Unknown
        );
        assert_eq!(
            rules
                .map(&Reference::parse_normalized("upstream-app/image1").unwrap())
                .unwrap()
                .cache_repository,
            "my-app/image1"
        );
    }

    #[tokio::test]
    async fn access_denied_is_one_clear_error() {
        let denied = mock!(aws_sdk_ecr::Client::describe_pull_through_cache_rules).then_error(|| {
            DescribePullThroughCacheRulesError::generic(
                aws_sdk_ecr::error::ErrorMetadata::builder()
                    .code("AccessDeniedException")
                    .message("User: arn:aws:iam::123456789012:user/ci is not authorized to perform: ecr:DescribePullThroughCacheRules")
                    .build(),
            )
        });
        let ecr = mock_client!(aws_sdk_ecr, [&denied]);
        let error = rules(&ecr).await.unwrap_err().to_string();
        assert!(error.starts_with("could not read the pull-through cache rules from ECR: AccessDeniedException: User: arn:aws:iam::123456789012:user/ci is not authorized"), "{error}");
        assert!(error.contains("--rule PREFIX=UPSTREAM"), "{error}");
    }
}
