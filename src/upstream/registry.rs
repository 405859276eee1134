//! What this crate asks of an upstream registry, and the registry API v2
//! over HTTP that answers it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use reqwest::Client;

use super::credential::Login;
use super::endpoints::Endpoints;
use super::error::{Asked, Problem, RegistryError};
use super::manifest::{self, ManifestHead};
use super::session::{self, Session, Token, TokenKey};
use super::tags;

const MAX_ATTEMPTS: u32 = 4;
const BASE_BACKOFF: Duration = Duration::from_millis(250);
const PAGE_SIZE: u32 = 1000;

/// An upstream registry, as a reference names it (`docker.io`, `quay.io`,
/// `localhost:5000`), asked directly rather than through the cache. No
/// request starts after `deadline`.
pub trait Registry: Send + Sync {
    /// Every tag of `repository` (e.g. "library/nginx").
    fn tags(
        &self,
        registry: &str,
        repository: &str,
        login: Option<&Login>,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<Vec<String>, RegistryError>> + Send;

    /// The digest and type of the manifest a tag or digest names, and the
    /// registry's rate limit, without a pull: a HEAD, which Docker Hub does
    /// not count.
    fn manifest_head(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
        login: Option<&Login>,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<ManifestHead, RegistryError>> + Send;

    /// The digests of the platform manifests an index lists: a GET, which
    /// Docker Hub counts as a pull. A registry that cannot tell lists none.
    fn index_manifests(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
        login: Option<&Login>,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<Vec<String>, RegistryError>> + Send {
        let _ = (registry, repository, reference, login, deadline);
        async { Ok(Vec::new()) }
    }
}

/// The registry API v2 over HTTP(S), at the registries' [`Endpoints`].
#[derive(Debug)]
pub struct HttpRegistry {
    /// Made at the first request: loading the system's root certificates
    /// takes milliseconds that a start without selectors should not pay.
    client: OnceLock<Client>,
    endpoints: Endpoints,
    pub(super) max_attempts: u32,
    pub(super) backoff: Duration,
    pub(super) page_size: u32,
    /// Tokens from realms, until they expire.
    tokens: Mutex<HashMap<TokenKey, Token>>,
}

impl HttpRegistry {
    /// Pages of 1000 tags; 4 attempts per request, the first retry after
    /// 250 to 500 ms.
    pub fn new(endpoints: Endpoints) -> HttpRegistry {
        HttpRegistry {
            client: OnceLock::new(),
            endpoints,
            max_attempts: MAX_ATTEMPTS,
            backoff: BASE_BACKOFF,
            page_size: PAGE_SIZE,
            tokens: Mutex::default(),
        }
    }

    /// Up to `max_attempts` per request, waiting as
    /// [`Backoff`](crate::backoff::Backoff) does from `backoff`.
    pub fn with_retries(self, max_attempts: u32, backoff: Duration) -> HttpRegistry {
        HttpRegistry {
            max_attempts,
            backoff,
            ..self
        }
    }

    /// Every tag of `repository` on `registry`; see [`Registry::tags`].
    pub async fn list(
        &self,
        registry: &str,
        repository: &str,
        login: Option<&Login>,
        deadline: Option<Instant>,
    ) -> Result<Vec<String>, RegistryError> {
        let failed = failure(registry, repository, Asked::Tags);
        let base = self.base(registry, repository).map_err(&failed)?;
        let mut session = Session::new(self, &base, repository, login, deadline);
        tags::list(&mut session, &base, repository, self.page_size)
            .await
            .map_err(failed)
    }

    pub(super) fn client(&self) -> &Client {
        self.client.get_or_init(session::new_client)
    }

    /// A token kept from an earlier call, while it is good.
    pub(super) fn kept_token(&self, key: &TokenKey) -> Option<Token> {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.get(key).filter(|token| token.is_fresh()).cloned()
    }

    pub(super) fn keep_token(&self, key: TokenKey, token: Token) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.retain(|_, kept| kept.is_fresh());
        tokens.insert(key, token);
    }

    /// The registry's base URL, for a repository that cannot change it.
    fn base(&self, registry: &str, repository: &str) -> Result<reqwest::Url, Problem> {
        let base = self
            .endpoints
            .base_url(registry)
            .map_err(|invalid| Problem::Invalid(invalid.to_string()))?;
        if !is_repository_path(repository) {
            return Err(Problem::Invalid(format!(
                "{repository:?} is not a repository path (lowercase components separated by '/')"
            )));
        }
        Ok(base)
    }
}

impl Registry for HttpRegistry {
    async fn tags(
        &self,
        registry: &str,
        repository: &str,
        login: Option<&Login>,
        deadline: Option<Instant>,
    ) -> Result<Vec<String>, RegistryError> {
        self.list(registry, repository, login, deadline).await
    }

    async fn manifest_head(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
        login: Option<&Login>,
        deadline: Option<Instant>,
    ) -> Result<ManifestHead, RegistryError> {
        let failed = failure(registry, repository, Asked::Manifest(reference.into()));
        let base = self.base(registry, repository).map_err(&failed)?;
        let mut session = Session::new(self, &base, repository, login, deadline);
        manifest::head(&mut session, &base, repository, reference)
            .await
            .map_err(failed)
    }

    async fn index_manifests(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
        login: Option<&Login>,
        deadline: Option<Instant>,
    ) -> Result<Vec<String>, RegistryError> {
        let failed = failure(registry, repository, Asked::Manifest(reference.into()));
        let base = self.base(registry, repository).map_err(&failed)?;
        let mut session = Session::new(self, &base, repository, login, deadline);
        manifest::children(&mut session, &base, repository, reference)
            .await
            .map_err(failed)
    }
}

fn failure<'a>(
    registry: &'a str,
    repository: &'a str,
    asked: Asked,
) -> impl Fn(Problem) -> RegistryError + 'a {
    move |problem| RegistryError {
        registry: registry.into(),
        repository: repository.into(),
        asked: asked.clone(),
        problem,
    }
}

/// What a parsed reference's repository can be, and nothing that would
/// change the URL it goes into.
fn is_repository_path(repository: &str) -> bool {
    repository.split('/').all(|component| {
        component
            .bytes()
            .next()
            .is_some_and(|first| first.is_ascii_alphanumeric())
            && component.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            })
    })
}
