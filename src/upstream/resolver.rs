//! Selectors resolved into images: each selector's repository is listed
//! upstream (once per run however many selectors name it, several at once),
//! and the tags it selects take its place in the plan, newest first. A
//! selector that selects nothing, or whose tags cannot be listed, stays in
//! the plan as a failure that says why.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures_util::stream::{self, StreamExt};

use super::credential::{CredentialError, Credentials, Login, LoginSource};
use super::error::RegistryError;
use super::manifest::ManifestHead;
use super::registry::{HttpRegistry, Registry};
use crate::host;
use crate::plan::{PlanFailure, PlannedImage};
use crate::reference::Reference;
use crate::rules::Rules;
use crate::selector::{self, Selector};

/// Repositories listed at once.
const CONCURRENCY: usize = 8;
/// The images the selectors of one run may select in all: 50 selectors of
/// `newest=100`. A selector past it fails on its own line.
pub const MAX_SELECTED: usize = 5_000;
/// The newest tags named when a selector selects none.
const SHOWN_TAGS: usize = 8;

/// Resolves with a [`Registry`] to list tags on, and the rules' logins.
pub struct Resolver<R = HttpRegistry, L = Credentials> {
    registry: R,
    credentials: L,
}

/// A repository upstream: its registry as references name it, and its path.
type Upstream = (String, String);

/// A listing that failed: what to say, and whether it may work later.
#[derive(Debug, Clone)]
struct Unlisted {
    message: String,
    retryable: bool,
}

impl<R: Registry, L: LoginSource> Resolver<R, L> {
    pub fn new(registry: R, credentials: L) -> Resolver<R, L> {
        Resolver {
            registry,
            credentials,
        }
    }

    /// The plan with each selector replaced by the images it selects, in its
    /// place; every other entry as it was.
    pub async fn resolve(
        &self,
        planned: Vec<PlannedImage>,
        rules: &Rules,
        deadline: Option<Instant>,
    ) -> Vec<PlannedImage> {
        let mut plans = self.resolve_each(vec![planned], rules, deadline).await;
        plans.pop().unwrap_or_default()
    }

    /// Several plans (an SQS batch's messages) resolved together, so that a
    /// repository that several of them name is listed once.
    pub async fn resolve_each(
        &self,
        plans: Vec<Vec<PlannedImage>>,
        rules: &Rules,
        deadline: Option<Instant>,
    ) -> Vec<Vec<PlannedImage>> {
        let mut unique: HashMap<Upstream, Arc<Selector>> = HashMap::new();
        for selector in plans.iter().flatten().filter_map(listable) {
            unique.entry(upstream(&selector, rules)).or_insert(selector);
        }
        if unique.is_empty() {
            return plans;
        }
        let listings: HashMap<Upstream, Result<Vec<String>, Unlisted>> = stream::iter(unique)
            .map(|(upstream, selector)| async move {
                let listing = self.list(&selector, rules, deadline).await;
                (upstream, listing)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut selected = 0;
        plans
            .into_iter()
            .map(|plan| {
                plan.into_iter()
                    .flat_map(|image| match listable(&image) {
                        Some(selector) => {
                            let listing = &listings[&upstream(&selector, rules)];
                            let images = resolved(&image, &selector, listing, rules);
                            selected += images.len();
                            match selected > MAX_SELECTED {
                                true => vec![too_many(&image, selected)],
                                false => images,
                            }
                        }
                        None => vec![image],
                    })
                    .collect()
            })
            .collect()
    }

    /// The rule's login for a reference, when its rule has one; an error
    /// says whether it may pass.
    pub async fn login_for(
        &self,
        reference: &Reference,
        rules: &Rules,
        deadline: Option<Instant>,
    ) -> Result<Option<Arc<Login>>, CredentialError> {
        match rules.map(reference) {
            Ok(mapping) => self.credentials.login(mapping.rule, deadline).await,
            Err(_) => Ok(None),
        }
    }

    /// Every tag of a reference's repository upstream, with its rule's login.
    pub async fn tags_of(
        &self,
        reference: &Reference,
        login: Option<&Login>,
        rules: &Rules,
        deadline: Option<Instant>,
    ) -> Result<Vec<String>, RegistryError> {
        let (registry, path) = upstream_repository(reference, rules);
        self.registry.tags(&registry, &path, login, deadline).await
    }

    /// A HEAD of the manifest that `tag_or_digest` names in a reference's
    /// repository upstream: its digest, type and the registry's pull quota,
    /// without spending a pull.
    pub async fn head_of(
        &self,
        reference: &Reference,
        tag_or_digest: &str,
        login: Option<&Login>,
        rules: &Rules,
        deadline: Option<Instant>,
    ) -> Result<ManifestHead, RegistryError> {
        let (registry, path) = upstream_repository(reference, rules);
        self.registry
            .manifest_head(&registry, &path, tag_or_digest, login, deadline)
            .await
    }

    /// The platform manifests an index lists upstream (a GET: a pull on
    /// Docker Hub).
    pub async fn index_of(
        &self,
        reference: &Reference,
        tag: &str,
        login: Option<&Login>,
        rules: &Rules,
        deadline: Option<Instant>,
    ) -> Result<Vec<String>, RegistryError> {
        let (registry, path) = upstream_repository(reference, rules);
        self.registry
            .index_manifests(&registry, &path, tag, login, deadline)
            .await
    }

    /// Every tag of the selector's repository, with its rule's credential.
    async fn list(
        &self,
        selector: &Selector,
        rules: &Rules,
        deadline: Option<Instant>,
    ) -> Result<Vec<String>, Unlisted> {
        let repository = selector.repository();
        let login = match rules.map(repository) {
            Ok(mapping) => self
                .credentials
                .login(mapping.rule, deadline)
                .await
                .map_err(|error| Unlisted {
                    message: error.to_string(),
                    retryable: error.is_retryable(),
                })?,
            Err(_) => None,
        };
        let (registry, path) = upstream(selector, rules);
        let listed = self
            .registry
            .tags(&registry, &path, login.as_deref(), deadline)
            .await;
        match &listed {
            Ok(tags) => tracing::info!(
                repository = %repository.name(),
                tags = tags.len(),
                "listed upstream"
            ),
            Err(error) => {
                tracing::warn!(repository = %repository.name(), %error, "cannot list upstream")
            }
        }
        listed.map_err(|error: RegistryError| Unlisted {
            retryable: error.is_retryable(),
            message: error.to_string(),
        })
    }
}

/// Where a selector's tags are listed: its own registry, or, for a selector
/// written against the account's own registry (`<account>.dkr.ecr.<region>.
/// amazonaws.com/docker-hub/library/nginx:~1.27`), the upstream of the rule
/// its path falls under, so that the rule's login only ever goes there.
fn upstream(selector: &Selector, rules: &Rules) -> Upstream {
    upstream_repository(selector.repository(), rules)
}

/// Where a reference's repository is upstream: its own registry, or for one
/// written against the account's own registry, its rule's upstream.
pub fn upstream_repository(repository: &Reference, rules: &Rules) -> Upstream {
    if host::is_private_ecr_host(repository.registry()) {
        let cached = rules
            .map(repository)
            .ok()
            .and_then(|mapping| mapping.rule.upstream_of(&mapping.cache_repository));
        if let Some(upstream) = cached {
            return upstream;
        }
    }
    (
        repository.registry().to_string(),
        repository.repository().to_string(),
    )
}

/// The selector of an entry that is one and maps onto a rule: only then is
/// its repository listed (an entry without a rule fails as it is).
fn listable(image: &PlannedImage) -> Option<Arc<Selector>> {
    image.target.as_ref()?;
    image.unresolved.clone()
}

/// A selector that would take the run past [`MAX_SELECTED`] images.
fn too_many(image: &PlannedImage, selected: usize) -> PlannedImage {
    image.unselected(
        PlanFailure {
            code: "TooManySelected",
            hint: "lower newest= or narrow the range of the selectors, or split them over \
                   several messages or schedules",
            retryable: false,
            skipped: false,
        },
        format!(
            "the selectors before it and this one select {selected} images, over the limit of \
             {MAX_SELECTED} images that selectors may select in one run"
        ),
    )
}

/// What an entry becomes once its repository was listed, or could not be.
fn resolved(
    image: &PlannedImage,
    selector: &Selector,
    listing: &Result<Vec<String>, Unlisted>,
    rules: &Rules,
) -> Vec<PlannedImage> {
    match listing {
        Ok(tags) => select(image, selector, tags, rules),
        Err(unlisted) => vec![image.unselected(
            PlanFailure {
                code: "UpstreamTagsUnavailable",
                hint: "`ecr-cache-warmer plan --resolve` lists a selector's tags from where it \
                       runs; they are listed from the upstream registry itself, which needs a \
                       route to it",
                retryable: unlisted.retryable,
                skipped: false,
            },
            unlisted.message.clone(),
        )],
    }
}

/// The images a selector selects of the tags listed, or its failure when it
/// selects none: with the newest tags upstream, so that the user sees why.
fn select(
    image: &PlannedImage,
    selector: &Selector,
    tags: &[String],
    rules: &Rules,
) -> Vec<PlannedImage> {
    let selected = selector.select(tags);
    tracing::info!(selector = selector.entry(), selected = ?selected, "selected");
    if selected.is_empty() {
        let newest = selector::newest_tags(tags, SHOWN_TAGS);
        let upstream = match newest.is_empty() {
            true => "it has no tags".to_string(),
            false => format!("its newest tags are {}", newest.join(", ")),
        };
        return vec![image.unselected(
            PlanFailure {
                code: "NoMatchingTag",
                hint: "widen the version range or the pattern (a tag with a suffix such as \
                       -alpine is only selected by a match= that accepts it); \
                       `ecr-cache-warmer plan --resolve` shows what a selector selects",
                retryable: false,
                skipped: false,
            },
            format!(
                "selector {} selects none of the {} tags of {} upstream: {upstream}",
                selector.entry(),
                tags.len(),
                selector.repository().name(),
            ),
        )];
    }
    selected
        .into_iter()
        .map(|tag| {
            PlannedImage::selected(
                &selector.reference_text(tag),
                selector,
                &image.source,
                rules,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::upstream::{Reply, TestServer};
    use crate::upstream::credential::{Anonymous, CredentialError};
    use crate::upstream::endpoints::Endpoints;
    use crate::upstream::tags::TagLister;

    /// An anonymous registry with nginx's releases, and no other repository.
    async fn registry() -> TestServer {
        TestServer::start(|request| match request.path.as_str() {
            "/v2/library/nginx/tags/list" => Reply::json(
                200,
                r#"{"name": "library/nginx", "tags": ["1.26.2", "1.26.3", "1.27.3", "latest"]}"#,
            ),
            "/v2/library/redis/tags/list" => Reply::json(503, r#"{"errors": []}"#),
            _ => Reply::json(404, r#"{"errors": [{"code": "NAME_UNKNOWN", "message": "repository name not known to registry"}]}"#),
        })
        .await
    }

    fn resolver(server: &TestServer) -> Resolver {
        let endpoints = Endpoints::parse([format!("registry-1.docker.io={}", server.url)]).unwrap();
        let lister = TagLister::new(endpoints).with_retries(2, std::time::Duration::from_millis(1));
        Resolver::new(lister, Credentials::new(None))
    }

    fn plan(entries: &[&str], rules: &Rules) -> Vec<PlannedImage> {
        let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
        crate::plan::plan(&entries, rules)
    }

    #[tokio::test]
    async fn a_repository_named_in_several_messages_is_listed_once() {
        let server = registry().await;
        let rules = Rules::parse_each(&["docker-hub=registry-1.docker.io"]).unwrap();
        let plans = vec![
            plan(&["nginx:~1.27", "redis:7"], &rules),
            plan(&["nginx:~1.26 newest=2"], &rules),
        ];
        let resolved = resolver(&server).resolve_each(plans, &rules, None).await;
        let inputs: Vec<Vec<(&str, Option<&str>)>> = resolved
            .iter()
            .map(|plan| {
                plan.iter()
                    .map(|image| (image.input.as_str(), image.selector.as_deref()))
                    .collect()
            })
            .collect();
        assert_eq!(
            inputs,
            [
                vec![("nginx:1.27.3", Some("nginx:~1.27")), ("redis:7", None)],
                vec![
                    ("nginx:1.26.3", Some("nginx:~1.26 newest=2")),
                    ("nginx:1.26.2", Some("nginx:~1.26 newest=2"))
                ],
            ]
        );
        assert!(resolved.iter().flatten().all(PlannedImage::is_ready));
        assert_eq!(server.requests_for("/v2/library/nginx/tags/list").len(), 1);
    }

    #[tokio::test]
    async fn a_selector_on_the_own_registry_is_listed_at_its_rules_upstream() {
        let server = registry().await;
        let host = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
        let rules = Rules::parse_each(&["docker-hub=registry-1.docker.io"])
            .unwrap()
            .with_own_registry("123456789012", "us-east-1");
        let entry = format!("{host}/docker-hub/library/nginx:~1.27");
        let resolved = resolver(&server)
            .resolve(plan(&[entry.as_str()], &rules), &rules, None)
            .await;
        let inputs: Vec<&str> = resolved.iter().map(|image| image.input.as_str()).collect();
        assert_eq!(inputs, [format!("{host}/docker-hub/library/nginx:1.27.3")]);
        assert!(resolved[0].is_ready());
        assert_eq!(
            resolved[0].target.as_ref().unwrap().cache_repository,
            "docker-hub/library/nginx"
        );
        assert_eq!(server.requests_for("/v2/library/nginx/tags/list").len(), 1);
        assert!(
            server
                .requests_for("/v2/docker-hub/library/nginx/tags/list")
                .is_empty(),
            "never listed at ECR's path"
        );
    }

    #[tokio::test]
    async fn selectors_past_the_limit_of_a_run_fail_on_their_own_line() {
        let tags: Vec<String> = (0..150).map(|n| format!("\"1.0.{n}\"")).collect();
        let body = format!(
            r#"{{"name": "library/nginx", "tags": [{}]}}"#,
            tags.join(",")
        );
        let server = TestServer::start(move |_| Reply::json(200, &body)).await;
        let rules = Rules::parse_each(&["docker-hub=registry-1.docker.io"]).unwrap();
        let entries = vec!["nginx:~1.0 newest=100"; MAX_SELECTED / 100 + 1];
        let resolved = resolver(&server)
            .resolve(plan(&entries, &rules), &rules, None)
            .await;
        assert_eq!(resolved.len(), MAX_SELECTED + 1);
        let last = resolved.last().unwrap();
        assert_eq!(last.failure.as_ref().unwrap().code, "TooManySelected");
        assert!(last
            .error
            .as_deref()
            .unwrap()
            .contains("over the limit of 5000"));
        assert!(resolved[..MAX_SELECTED].iter().all(PlannedImage::is_ready));
    }

    #[tokio::test]
    async fn a_selector_fails_in_its_place_and_says_why() {
        let server = registry().await;
        let rules = Rules::parse_each(&["docker-hub=registry-1.docker.io"]).unwrap();
        let entries = [
            "nginx:~1.29",
            "redis:~7",
            "missing:~1",
            "ghcr.io/org/app:~1",
            "alpine:3",
        ];
        let resolved = resolver(&server)
            .resolve(plan(&entries, &rules), &rules, None)
            .await;
        let failures: Vec<(&str, Option<&str>, bool)> = resolved
            .iter()
            .map(|image| {
                let failure = image.failure.as_ref();
                (
                    image.input.as_str(),
                    failure.map(|f| f.code),
                    failure.is_some_and(|f| f.retryable),
                )
            })
            .collect();
        assert_eq!(
            failures,
            [
                ("nginx:~1.29", Some("NoMatchingTag"), false),
                ("redis:~7", Some("UpstreamTagsUnavailable"), true),
                ("missing:~1", Some("UpstreamTagsUnavailable"), false),
                // No rule: planned as a failure, never listed.
                ("ghcr.io/org/app:~1", None, false),
                ("alpine:3", None, false),
            ]
        );
        let nothing = resolved[0].error.as_deref().unwrap();
        assert!(
            nothing.contains("selects none of the 4 tags")
                && nothing.contains("1.27.3, 1.26.3, 1.26.2, latest"),
            "{nothing}"
        );
        assert!(resolved[2]
            .error
            .as_deref()
            .unwrap()
            .contains("library/<name>"));
        assert!(resolved.iter().take(4).all(PlannedImage::is_failure));
        assert!(resolved[4].is_ready());
        assert!(server
            .requests_for("/v2/ghcr.io/org/app/tags/list")
            .is_empty());
    }

    /// A registry without HTTP: nginx's tags, and a count of listings.
    #[derive(Default)]
    struct Listed {
        listings: std::sync::atomic::AtomicUsize,
    }

    impl Registry for Listed {
        async fn tags(
            &self,
            _: &str,
            _: &str,
            _: Option<&crate::upstream::credential::Login>,
            _: Option<Instant>,
        ) -> Result<Vec<String>, RegistryError> {
            self.listings
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(vec!["1.27.3".into(), "1.27.4".into()])
        }

        async fn manifest_head(
            &self,
            _: &str,
            _: &str,
            _: &str,
            _: Option<&crate::upstream::credential::Login>,
            _: Option<Instant>,
        ) -> Result<crate::upstream::manifest::ManifestHead, RegistryError> {
            unreachable!("resolving reads no manifest")
        }
    }

    /// Secrets Manager throttling every read.
    struct Throttled;

    impl LoginSource for Throttled {
        async fn login(
            &self,
            rule: &crate::rules::Rule,
            _: Option<Instant>,
        ) -> Result<Option<Arc<crate::upstream::credential::Login>>, CredentialError> {
            Err(CredentialError::Read {
                rule: rule.to_string(),
                arn:
                    "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/hub"
                        .into(),
                reason: "ThrottlingException: Rate exceeded".into(),
                retryable: true,
            })
        }
    }

    #[tokio::test]
    async fn any_registry_and_login_source_resolve_a_plan() {
        let rules = Rules::parse_each(&["docker-hub=registry-1.docker.io"]).unwrap();
        let resolver = Resolver::new(Listed::default(), Anonymous);
        let resolved = resolver
            .resolve(plan(&["nginx:~1.27"], &rules), &rules, None)
            .await;
        assert_eq!(resolved[0].input, "nginx:1.27.4");
        assert_eq!(resolver.registry.listings.into_inner(), 1);
    }

    #[tokio::test]
    async fn a_credential_read_that_may_pass_leaves_the_selector_retryable() {
        let rules = Rules::parse_each(&["docker-hub=registry-1.docker.io"]).unwrap();
        let resolver = Resolver::new(Listed::default(), Throttled);
        let resolved = resolver
            .resolve(plan(&["nginx:~1.27"], &rules), &rules, None)
            .await;
        let failure = resolved[0].failure.as_ref().unwrap();
        assert_eq!(failure.code, "UpstreamTagsUnavailable");
        assert!(failure.retryable, "a throttled read is tried again later");
        assert!(resolved[0]
            .error
            .as_deref()
            .unwrap()
            .contains("ThrottlingException"));
        assert_eq!(resolver.registry.listings.into_inner(), 0);
    }
}
