//! What ECR says about the registry, read once for every rule: the registry
//! permissions policy, the repository creation templates, the repositories,
//! and each rule's credential. A call that fails is kept as its error, for the
//! finding that needed it.

use aws_sdk_ecr::types::{ImageTagMutability, RctAppliedFor};
use futures_util::{stream, StreamExt};

use crate::aws::describe_error;
use crate::plan::PlannedImage;
use crate::rules::Credential;
use crate::rules::Rules;

/// Calls to describe repositories by name at once, when the registry cannot be listed.
const DESCRIBE_CONCURRENCY: usize = 8;

/// An answer of ECR, or why there is none (ECR's code and message).
pub type Fetched<T> = Result<T, String>;

/// Everything the findings are judged on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The policy's text; `None` when the registry has none.
    pub policy: Fetched<Option<String>>,
    /// The registry's account, as ECR names it (for the policy's resource ARNs).
    pub registry_id: Option<String>,
    pub templates: Fetched<Vec<Template>>,
    pub repositories: Repositories,
    /// Per rule, in order: ECR's validation, when the rule has a credential to validate.
    pub validations: Vec<Option<Fetched<Validation>>>,
}

/// A repository creation template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub prefix: String,
    /// `MUTABLE`, `IMMUTABLE`, `IMMUTABLE_WITH_EXCLUSION`, ...
    pub tag_mutability: String,
    /// `AES256`, or `KMS` with its key.
    pub encryption: String,
    /// Applied to repositories that the pull-through cache creates.
    pub for_cache: bool,
    /// Whether the template sets a KMS key or resource tags, for which ECR
    /// needs a repository creation role.
    pub needs_role: bool,
    /// `customRoleArn`: the role ECR assumes to create the repositories.
    pub role: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    pub name: String,
    pub tag_mutability: String,
}

/// The repositories known to exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repositories {
    pub known: Vec<Repository>,
    /// Why the registry could not be listed: then `known` holds only the
    /// cache repositories of the images given that exist.
    pub listing_error: Option<String>,
}

/// ECR's answer to ValidatePullThroughCacheRule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    pub valid: bool,
    pub failure: Option<String>,
}

pub async fn read(ecr: &aws_sdk_ecr::Client, rules: &Rules, images: &[PlannedImage]) -> Facts {
    let (policy, registry_id) = match registry_policy(ecr).await {
        Ok((text, id)) => (Ok(text), id),
        Err(error) => (Err(error), None),
    };
    let mut validations = Vec::new();
    for rule in rules.iter() {
        validations.push(match rule.credential() {
            Credential::Given { .. } => Some(validate(ecr, rule.ecr_prefix()).await),
            Credential::Unknown | Credential::None => None,
        });
    }
    Facts {
        policy,
        registry_id,
        templates: templates(ecr).await,
        repositories: repositories(ecr, images).await,
        validations,
    }
}

async fn registry_policy(ecr: &aws_sdk_ecr::Client) -> Fetched<(Option<String>, Option<String>)> {
    match ecr.get_registry_policy().send().await {
        Ok(output) => Ok((
            output.policy_text().map(str::to_string),
            output.registry_id().map(str::to_string),
        )),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_registry_policy_not_found_exception()) =>
        {
            Ok((None, None))
        }
        Err(error) => Err(describe_error(&error)),
    }
}

async fn validate(ecr: &aws_sdk_ecr::Client, prefix: &str) -> Fetched<Validation> {
    let output = ecr
        .validate_pull_through_cache_rule()
        .ecr_repository_prefix(prefix)
        .send()
        .await
        .map_err(|error| describe_error(&error))?;
    Ok(Validation {
        valid: output.is_valid(),
        failure: output.failure().map(str::to_string),
    })
}

async fn templates(ecr: &aws_sdk_ecr::Client) -> Fetched<Vec<Template>> {
    let mut pages = ecr
        .describe_repository_creation_templates()
        .into_paginator()
        .items()
        .send();
    let mut templates = Vec::new();
    while let Some(template) = pages.next().await {
        let template = template.map_err(|error| describe_error(&error))?;
        let encryption = match template.encryption_configuration() {
            Some(config) => match config.kms_key() {
                Some(key) => format!("{} with key {key}", config.encryption_type().as_str()),
                None => config.encryption_type().as_str().to_string(),
            },
            None => "AES256".to_string(),
        };
        let kms = template
            .encryption_configuration()
            .is_some_and(|config| config.kms_key().is_some());
        templates.push(Template {
            needs_role: kms || !template.resource_tags().is_empty(),
            role: template.custom_role_arn().map(str::to_string),
            prefix: template.prefix().unwrap_or_default().to_string(),
            tag_mutability: mutability(template.image_tag_mutability()),
            encryption,
            for_cache: template
                .applied_for()
                .contains(&RctAppliedFor::PullThroughCache),
        });
    }
    Ok(templates)
}

/// Every repository of the registry; when listing is refused (it needs
/// `ecr:DescribeRepositories` on `*`), the cache repositories of the images,
/// each described by name (which a grant on the prefixes allows).
async fn repositories(ecr: &aws_sdk_ecr::Client, images: &[PlannedImage]) -> Repositories {
    let mut pages = ecr.describe_repositories().into_paginator().items().send();
    let mut known = Vec::new();
    let mut listing_error = None;
    while let Some(repository) = pages.next().await {
        match repository {
            Ok(repository) => known.push(Repository {
                name: repository.repository_name().unwrap_or_default().to_string(),
                tag_mutability: mutability(repository.image_tag_mutability()),
            }),
            Err(error) => {
                listing_error = Some(describe_error(&error));
                break;
            }
        }
    }
    if listing_error.is_none() {
        return Repositories {
            known,
            listing_error,
        };
    }
    let mut names: Vec<&str> = images
        .iter()
        .filter_map(|image| Some(image.target.as_ref()?.cache_repository.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    let known = stream::iter(names)
        .map(|name| describe_one(ecr, name))
        .buffered(DESCRIBE_CONCURRENCY)
        .filter_map(|found| async move { found })
        .collect()
        .await;
    Repositories {
        known,
        listing_error,
    }
}

/// One repository by name; `None` when it does not exist or cannot be described.
async fn describe_one(ecr: &aws_sdk_ecr::Client, name: &str) -> Option<Repository> {
    let output = ecr
        .describe_repositories()
        .repository_names(name)
        .send()
        .await
        .ok()?;
    let repository = output.repositories().first()?;
    Some(Repository {
        name: name.to_string(),
        tag_mutability: mutability(repository.image_tag_mutability()),
    })
}

/// ECR leaves tags mutable when it does not say.
fn mutability(value: Option<&ImageTagMutability>) -> String {
    value
        .map_or("MUTABLE", ImageTagMutability::as_str)
        .to_string()
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecr::operation::describe_repositories::{
        DescribeRepositoriesError, DescribeRepositoriesOutput,
    };
    use aws_sdk_ecr::types::Repository as EcrRepository;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    use super::*;
    use crate::rules::Rules;

    #[tokio::test]
    async fn a_refused_listing_falls_back_to_the_images_repositories_by_name() {
        let listing = mock!(aws_sdk_ecr::Client::describe_repositories)
            .match_requests(|req| req.repository_names().is_empty())
            .then_error(|| {
                DescribeRepositoriesError::generic(
                    aws_sdk_ecr::error::ErrorMetadata::builder()
                        .code("AccessDeniedException")
                        .message(
                            "not authorized to perform: ecr:DescribeRepositories on resource: *",
                        )
                        .build(),
                )
            });
        let nginx = mock!(aws_sdk_ecr::Client::describe_repositories)
            .match_requests(|req| req.repository_names() == ["docker-hub/library/nginx"])
            .then_output(|| {
                DescribeRepositoriesOutput::builder()
                    .repositories(
                        EcrRepository::builder()
                            .repository_name("docker-hub/library/nginx")
                            .image_tag_mutability(ImageTagMutability::Immutable)
                            .build(),
                    )
                    .build()
            });
        let missing = mock!(aws_sdk_ecr::Client::describe_repositories)
            .match_requests(|req| req.repository_names() == ["docker-hub/library/redis"])
            .then_error(|| {
                DescribeRepositoriesError::generic(
                    aws_sdk_ecr::error::ErrorMetadata::builder()
                        .code("RepositoryNotFoundException")
                        .build(),
                )
            });
        let ecr = mock_client!(
            aws_sdk_ecr,
            RuleMode::MatchAny,
            [&listing, &nginx, &missing]
        );
        let rules = Rules::parse_each(&["docker-hub=registry-1.docker.io"]).unwrap();
        let images = crate::plan::plan(
            &["nginx:1.27".into(), "nginx:1.26".into(), "redis:7".into()],
            &rules,
        );
        let found = repositories(&ecr, &images).await;
        assert_eq!(
            found.known,
            [Repository {
                name: "docker-hub/library/nginx".into(),
                tag_mutability: "IMMUTABLE".into()
            }]
        );
        assert!(found
            .listing_error
            .unwrap()
            .starts_with("AccessDeniedException: not authorized"));
        assert_eq!(
            (listing.num_calls(), nginx.num_calls(), missing.num_calls()),
            (1, 1, 1),
            "each repository described once"
        );
    }
}
