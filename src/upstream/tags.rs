//! The tags of a repository on an upstream registry (registry API v2
//! `tags/list`), following the pages its `Link` headers point to.
//!
//! Authentication answers the registry's `WWW-Authenticate` challenge: a
//! token from the realm of a Bearer challenge, or the login itself for Basic.
//! Throttling, server faults and network failures are tried again with
//! [`Backoff`], waiting at least as long as a `Retry-After` asks.

use std::collections::HashSet;
use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, LINK, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Client, RequestBuilder, StatusCode, Url};
use serde::Deserialize;
use thiserror::Error;

use super::challenge::{parse_challenges, Challenge};
use super::endpoints::Endpoints;
use crate::backoff::Backoff;

const PAGE_SIZE: u32 = 1000;
/// A million tags at the default page size: more means a Link header that
/// never ends.
const MAX_PAGES: usize = 1000;
const MAX_ATTEMPTS: u32 = 4;
const BASE_BACKOFF: Duration = Duration::from_millis(250);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A registry asking for a longer pause is not waited for: the run would
/// hold its other work that long.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
const USER_AGENT: &str = concat!("ecr-cache-warmer/", env!("CARGO_PKG_VERSION"));
/// How much of a registry's error message goes into ours.
const MESSAGE_MAX_CHARS: usize = 200;

/// A username and secret for an upstream registry; Debug prints neither.
#[derive(Clone, PartialEq, Eq)]
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

/// Lists tags on upstream registries.
#[derive(Debug, Clone)]
pub struct TagLister {
    /// Made at the first listing: loading the system's root certificates
    /// takes milliseconds that a start without selectors should not pay.
    client: OnceLock<Client>,
    endpoints: Endpoints,
    max_attempts: u32,
    backoff: Duration,
    page_size: u32,
}

/// Why the tags of a repository could not be listed.
#[derive(Debug, Error)]
#[error("cannot list the tags of {repository} on {registry}: {problem}")]
pub struct TagsError {
    pub registry: String,
    pub repository: String,
    pub problem: Problem,
}

/// What went wrong, with what the registry said, and what to do about it.
#[derive(Debug, Error)]
pub enum Problem {
    #[error("{answer}: {}", unauthorized_hint(*.anonymous))]
    Unauthorized { answer: String, anonymous: bool },
    #[error("{answer}: check the repository path and its spelling (Docker Hub's official images are library/<name>, e.g. library/nginx)")]
    NotFound { answer: String },
    #[error("{answer}{}: the registry's rate limit; try again later, or give the rule a credential with a higher limit", tried(*.attempts, *.retry_after))]
    Throttled {
        answer: String,
        attempts: u32,
        retry_after: Option<u64>,
    },
    #[error("{answer}{}: check that the registry is up and that there is a network route to it (a Lambda function in a private subnet without a NAT gateway cannot reach the internet: list tags from where there is a route)", tried(*.attempts, *.retry_after))]
    Unavailable {
        answer: String,
        attempts: u32,
        retry_after: Option<u64>,
    },
    #[error("{0}: this is not a registry API v2 answer; check the registry's name and its upstream endpoint URL")]
    Protocol(String),
    #[error("the deadline passed before the listing was done: give the run more time")]
    Deadline,
    #[error("{0}")]
    Invalid(String),
}

impl TagsError {
    /// Whether a later attempt could succeed without anything being changed.
    pub fn is_retryable(&self) -> bool {
        self.problem.is_retryable()
    }

    /// A short name for reports: unauthorized, not-found, throttled,
    /// unavailable, protocol, deadline or invalid.
    pub fn kind(&self) -> &'static str {
        self.problem.kind()
    }
}

impl Problem {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Problem::Throttled { .. } | Problem::Unavailable { .. } | Problem::Deadline
        )
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Problem::Unauthorized { .. } => "unauthorized",
            Problem::NotFound { .. } => "not-found",
            Problem::Throttled { .. } => "throttled",
            Problem::Unavailable { .. } => "unavailable",
            Problem::Protocol(_) => "protocol",
            Problem::Deadline => "deadline",
            Problem::Invalid(_) => "invalid",
        }
    }
}

fn unauthorized_hint(anonymous: bool) -> &'static str {
    if anonymous {
        "the registry does not let this repository be listed anonymously: give its pull-through cache rule a credential (a Secrets Manager secret ecr-pullthroughcache/… with the keys username and accessToken); Docker Hub answers the same for a repository that does not exist, so check its path too"
    } else {
        "check the credential, the rule's Secrets Manager secret ecr-pullthroughcache/… with the keys username and accessToken (a wrong username, an expired or revoked token, or one without read access to this repository); Docker Hub answers the same for a repository that does not exist, so check its path too"
    }
}

fn tried(attempts: u32, retry_after: Option<u64>) -> String {
    let plural = if attempts == 1 { "" } else { "s" };
    let mut note = format!(" after {attempts} attempt{plural}");
    if let Some(seconds) = retry_after {
        note += &format!(", Retry-After {seconds} s");
    }
    note
}

impl TagLister {
    /// Pages of 1000 tags; 4 attempts per request, the first retry after
    /// 250 to 500 ms.
    pub fn new(endpoints: Endpoints) -> TagLister {
        TagLister {
            client: OnceLock::new(),
            endpoints,
            max_attempts: MAX_ATTEMPTS,
            backoff: BASE_BACKOFF,
            page_size: PAGE_SIZE,
        }
    }

    /// Up to `max_attempts` per request, waiting as [`Backoff`] does from
    /// `backoff`.
    pub fn with_retries(self, max_attempts: u32, backoff: Duration) -> TagLister {
        TagLister {
            max_attempts,
            backoff,
            ..self
        }
    }

    /// Every tag of `repository` (e.g. "library/nginx") on `registry` (as a
    /// reference names it, e.g. "docker.io", "quay.io", "localhost:5000"),
    /// following Link pages. No request starts after `deadline`.
    pub async fn list(
        &self,
        registry: &str,
        repository: &str,
        login: Option<&Login>,
        deadline: Option<Instant>,
    ) -> Result<Vec<String>, TagsError> {
        let error = |problem| TagsError {
            registry: registry.into(),
            repository: repository.into(),
            problem,
        };
        let base = self
            .endpoints
            .base_url(registry)
            .map_err(|invalid| error(Problem::Invalid(invalid.to_string())))?;
        if !is_repository_path(repository) {
            return Err(error(Problem::Invalid(format!(
                "{repository:?} is not a repository path (lowercase components separated by '/')"
            ))));
        }
        let mut listing = Listing {
            lister: self,
            base,
            repository,
            login,
            deadline,
            credential: Credential::Anonymous,
        };
        listing.all_tags().await.map_err(error)
    }
}

/// The HTTP client; `timeout` is also set on each request, to end it at the
/// deadline when that comes sooner.
impl TagLister {
    fn client(&self) -> &Client {
        self.client.get_or_init(new_client)
    }
}

fn new_client() -> Client {
    let builder = || {
        Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
    };
    builder().build().unwrap_or_else(|error| {
        // Only the system's root certificates can fail here, when none of
        // them is valid. Without them each HTTPS request fails on its own,
        // with a TLS error that names the registry.
        tracing::warn!(%error, "no usable root certificates for upstream registries");
        builder()
            .tls_built_in_native_certs(false)
            .build()
            .expect("an HTTP client without root certificates")
    })
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

/// One call of [`TagLister::list`].
struct Listing<'a> {
    lister: &'a TagLister,
    base: Url,
    repository: &'a str,
    login: Option<&'a Login>,
    deadline: Option<Instant>,
    /// What the registry last asked for, kept for the following pages.
    credential: Credential<'a>,
}

enum Credential<'a> {
    Anonymous,
    Basic(&'a Login),
    Bearer(String),
}

impl Credential<'_> {
    fn apply(&self, request: RequestBuilder) -> RequestBuilder {
        match self {
            Credential::Anonymous => request,
            Credential::Basic(login) => request.basic_auth(&login.username, Some(&login.secret)),
            Credential::Bearer(token) => request.bearer_auth(token),
        }
    }
}

struct Page {
    tags: Vec<String>,
    next: Option<Url>,
}

#[derive(Deserialize)]
struct TagList {
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
}

impl Listing<'_> {
    async fn all_tags(&mut self) -> Result<Vec<String>, Problem> {
        let mut url = under(&self.base, &format!("v2/{}/tags/list", self.repository))?;
        url.query_pairs_mut()
            .append_pair("n", &self.lister.page_size.to_string());
        let mut seen = HashSet::new();
        let mut tags = Vec::new();
        loop {
            if seen.len() == MAX_PAGES {
                return Err(Problem::Protocol(format!(
                    "the tags run over more than {MAX_PAGES} pages"
                )));
            }
            if !seen.insert(url.clone()) {
                return Err(Problem::Protocol(format!(
                    "the Link header leads back to {url}, a page already listed"
                )));
            }
            let page = self.page(&url).await?;
            tags.extend(page.tags);
            match page.next {
                Some(next) => url = next,
                None => return Ok(tags),
            }
        }
    }

    /// One page; a 401 is answered once, which also renews an expired token.
    async fn page(&mut self, url: &Url) -> Result<Page, Problem> {
        let mut answer = self.get(url).await?;
        if answer.status == StatusCode::UNAUTHORIZED {
            self.authenticate(&answer).await?;
            answer = self.get(url).await?;
        }
        match answer.status {
            status if status.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Err(self.refused(&answer)),
            status
                if status == StatusCode::NOT_FOUND
                    || answer.error_code().as_deref() == Some("NAME_UNKNOWN") =>
            {
                return Err(Problem::NotFound {
                    answer: answer.describe(),
                })
            }
            _ => return Err(Problem::Protocol(answer.describe())),
        }
        let list: TagList = serde_json::from_slice(&answer.body).map_err(|error| {
            Problem::Protocol(format!(
                "the tag list from {} does not parse: {error}",
                answer.url
            ))
        })?;
        let next = match next_link(&answer.headers) {
            Some(link) => Some(resolve(&self.base, &answer.url, link)?),
            None => None,
        };
        Ok(Page {
            tags: list.tags.unwrap_or_default(),
            next,
        })
    }

    async fn get(&self, url: &Url) -> Result<Answer, Problem> {
        self.send(|| self.credential.apply(self.lister.client().get(url.clone())))
            .await
    }

    /// The registry refused this login, or anonymous access.
    fn refused(&self, answer: &Answer) -> Problem {
        Problem::Unauthorized {
            answer: answer.describe(),
            anonymous: self.login.is_none(),
        }
    }

    /// Takes up what the registry's 401 asks for: a token from the realm of
    /// its Bearer challenge, or the login for a Basic one.
    async fn authenticate(&mut self, refused: &Answer) -> Result<(), Problem> {
        let challenges: Vec<Challenge> = refused
            .headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(parse_challenges)
            .collect();
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            self.credential = Credential::Bearer(self.token(bearer, &refused.url).await?);
            return Ok(());
        }
        match self.login {
            Some(login) if challenges.iter().any(|c| c.scheme == "basic") => {
                self.credential = Credential::Basic(login);
                Ok(())
            }
            _ => Err(self.refused(refused)),
        }
    }

    /// A token from the challenge's realm, asked for with the login (Basic)
    /// when there is one.
    async fn token(&self, challenge: &Challenge, challenged: &Url) -> Result<String, Problem> {
        let realm = challenge.param("realm").ok_or_else(|| {
            Problem::Protocol(format!(
                "the Bearer challenge from {challenged} has no realm"
            ))
        })?;
        let mut url = challenged.join(realm).map_err(|error| {
            Problem::Protocol(format!("the Bearer realm {realm:?} is not a URL: {error}"))
        })?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = challenge.param("service") {
                query.append_pair("service", service);
            }
            let scope = match challenge.param("scope") {
                Some(scope) => scope.to_string(),
                None => format!("repository:{}:pull", self.repository),
            };
            query.append_pair("scope", &scope);
        }
        let credential = self.login.map_or(Credential::Anonymous, Credential::Basic);
        let answer = self
            .send(|| credential.apply(self.lister.client().get(url.clone())))
            .await?;
        match answer.status {
            status if status.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Err(self.refused(&answer)),
            _ => return Err(Problem::Protocol(answer.describe())),
        }
        // serde's message could quote the body, which holds the token.
        let token: TokenAnswer = serde_json::from_slice(&answer.body)
            .map_err(|_| Problem::Protocol(format!("the token from {} is not JSON", answer.url)))?;
        token
            .token
            .or(token.access_token)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| Problem::Protocol(format!("{} answered without a token", answer.url)))
    }

    /// Sends the request `request` builds, again after throttling, server
    /// faults and network failures while attempts and time remain.
    async fn send(&self, request: impl Fn() -> RequestBuilder) -> Result<Answer, Problem> {
        let lister = self.lister;
        let mut backoff = Backoff::new(lister.backoff, lister.max_attempts, self.deadline);
        let mut attempts = 0;
        loop {
            let timeout = self.request_timeout().ok_or(Problem::Deadline)?;
            attempts += 1;
            let (problem, retry_after) = match read(request().timeout(timeout)).await {
                Ok(answer) if !is_transient(answer.status) => return Ok(answer),
                Ok(answer) => answer.transient(attempts),
                Err(error) if is_transient_error(&error) => {
                    tracing::debug!(error = %chain(&error), "upstream registry unreachable");
                    let problem = Problem::Unavailable {
                        answer: chain(&error),
                        attempts,
                        retry_after: None,
                    };
                    (problem, None)
                }
                Err(error) => return Err(Problem::Protocol(chain(&error))),
            };
            if !self.wait(&mut backoff, retry_after).await {
                return Err(problem);
            }
        }
    }

    /// The request timeout, shortened to end at the deadline; None once it
    /// has passed.
    fn request_timeout(&self) -> Option<Duration> {
        match self.deadline {
            None => Some(REQUEST_TIMEOUT),
            Some(deadline) => deadline
                .checked_duration_since(Instant::now())
                .filter(|left| !left.is_zero())
                .map(|left| left.min(REQUEST_TIMEOUT)),
        }
    }

    /// Waits the backoff's delay, or the registry's Retry-After when that is
    /// longer; false, without waiting, when there is no attempt left or the
    /// wait would pass the deadline.
    async fn wait(&self, backoff: &mut Backoff, retry_after: Option<Duration>) -> bool {
        let retry_after = retry_after.unwrap_or_default();
        if retry_after > MAX_RETRY_AFTER
            || self
                .deadline
                .is_some_and(|deadline| Instant::now() + retry_after >= deadline)
        {
            return false;
        }
        let started = tokio::time::Instant::now();
        if !backoff.wait().await {
            return false;
        }
        tokio::time::sleep(retry_after.saturating_sub(started.elapsed())).await;
        true
    }
}

/// A response read to its end: trying again covers reading the body too.
struct Answer {
    url: Url,
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

#[derive(Deserialize)]
struct ErrorBody {
    errors: Option<Vec<RegistryError>>,
    details: Option<String>,
}

#[derive(Deserialize)]
struct RegistryError {
    code: Option<String>,
    message: Option<String>,
}

async fn read(request: RequestBuilder) -> Result<Answer, reqwest::Error> {
    let response = request.send().await?;
    let (url, status) = (response.url().clone(), response.status());
    tracing::debug!(%url, %status, "upstream registry answered");
    let headers = response.headers().clone();
    let body = response.bytes().await?.to_vec();
    Ok(Answer {
        url,
        status,
        headers,
        body,
    })
}

impl Answer {
    /// "GET <url> answered HTTP 404 Not Found (NAME_UNKNOWN: …)".
    fn describe(&self) -> String {
        let mut text = format!("GET {} answered HTTP {}", self.url, self.status);
        if let Some(said) = self.registry_says() {
            let said: String = said.chars().take(MESSAGE_MAX_CHARS).collect();
            text += &format!(" ({said})");
        }
        text
    }

    /// The first error of a registry's error body (`errors[0]`), or the
    /// `details` of a token endpoint's.
    fn registry_says(&self) -> Option<String> {
        let body: ErrorBody = serde_json::from_slice(&self.body).ok()?;
        let first = body.errors.and_then(|errors| errors.into_iter().next());
        match first {
            Some(RegistryError {
                code: Some(code),
                message: Some(message),
            }) => Some(format!("{code}: {message}")),
            Some(RegistryError { code, message }) => code.or(message),
            None => body.details,
        }
    }

    fn error_code(&self) -> Option<String> {
        let body: ErrorBody = serde_json::from_slice(&self.body).ok()?;
        body.errors?.into_iter().next()?.code
    }

    /// A throttled or failing answer as the error it becomes if it is the
    /// last, and the Retry-After it asks for.
    fn transient(&self, attempts: u32) -> (Problem, Option<Duration>) {
        let retry_after = match self.status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                retry_after_seconds(&self.headers)
            }
            _ => None,
        };
        let answer = self.describe();
        let problem = if self.status == StatusCode::TOO_MANY_REQUESTS {
            Problem::Throttled {
                answer,
                attempts,
                retry_after,
            }
        } else {
            Problem::Unavailable {
                answer,
                attempts,
                retry_after,
            }
        };
        (problem, retry_after.map(Duration::from_secs))
    }
}

/// Retry-After in seconds; an HTTP date is left to the backoff.
fn retry_after_seconds(headers: &HeaderMap) -> Option<u64> {
    headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()
}

fn is_transient(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

fn is_transient_error(error: &reqwest::Error) -> bool {
    error.is_timeout() || error.is_connect() || error.is_request() || error.is_body()
}

/// An error and its causes, which say what the network did
/// ("Connection refused").
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text += &format!(": {cause}");
        source = cause.source();
    }
    text
}

/// `path` under the base URL, which may have a path of its own.
fn under(base: &Url, path: &str) -> Result<Url, Problem> {
    let url = format!("{}/{path}", base.as_str().trim_end_matches('/'));
    Url::parse(&url).map_err(|error| Problem::Invalid(format!("{url} is not a URL: {error}")))
}

/// The target of the `rel="next"` link among the Link headers.
fn next_link(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(LINK)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(next_in)
}

/// `<target>; rel="next"` among the comma-separated links of one header.
fn next_in(header: &str) -> Option<&str> {
    let mut rest = header;
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        let end = after.find('>')?;
        let target = &after[..end];
        rest = &after[end + 1..];
        let params = &rest[..rest.find('<').unwrap_or(rest.len())];
        if params.split(';').any(is_rel_next) {
            return Some(target);
        }
    }
    None
}

fn is_rel_next(param: &str) -> bool {
    let Some((key, value)) = param.split_once('=') else {
        return false;
    };
    let value = value.trim().trim_end_matches(',').trim().trim_matches('"');
    key.trim().eq_ignore_ascii_case("rel")
        && value
            .split_whitespace()
            .any(|rel| rel.eq_ignore_ascii_case("next"))
}

/// Where a Link target leads: relative to the URL that answered it. A
/// registry behind a proxy that serves it under a path (a base such as
/// `http://proxy/upstream/quay.io`) still links to `/v2/…`, which is taken
/// under that path. The next page must be on the same origin, as the
/// credential goes with it.
fn resolve(base: &Url, answered: &Url, target: &str) -> Result<Url, Problem> {
    let prefixed = base.path() != "/" && target.starts_with("/v2/");
    let url = if prefixed {
        under(base, &target[1..])
    } else {
        answered.join(target).map_err(|error| {
            Problem::Protocol(format!("the Link target {target:?} is not a URL: {error}"))
        })
    }?;
    if url.origin() != answered.origin() {
        return Err(Problem::Protocol(format!(
            "the Link header of {answered} leads to another origin, {url}; paging stops rather than send the credential there"
        )));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::test_server::{Reply, Request, TestServer};

    const TAGS: &str = "/v2/library/nginx/tags/list";
    const TOKEN: &str = "T0K3N";
    const SECRET: &str = "s3cr3t-value";
    /// base64("octocat:s3cr3t-value")
    const BASIC: &str = "Basic b2N0b2NhdDpzM2NyM3QtdmFsdWU=";

    fn login() -> Login {
        Login {
            username: "octocat".into(),
            secret: SECRET.into(),
        }
    }

    fn lister(server: &TestServer) -> TagLister {
        let endpoints = Endpoints::parse([format!("docker.io={}", server.url)]).unwrap();
        TagLister::new(endpoints).with_retries(4, Duration::from_millis(1))
    }

    async fn list(server: &TestServer, login: Option<&Login>) -> Result<Vec<String>, TagsError> {
        lister(server)
            .list("docker.io", "library/nginx", login, None)
            .await
    }

    fn tag_list(tags: &[&str]) -> Reply {
        Reply::json(
            200,
            &serde_json::json!({ "name": "library/nginx", "tags": tags }).to_string(),
        )
    }

    fn last(request: &Request) -> Option<&str> {
        request
            .query
            .split('&')
            .find_map(|pair| pair.strip_prefix("last="))
    }

    /// Three pages, linked the ways registries write Link: a path, then an
    /// absolute URL.
    fn pages(request: &Request) -> Reply {
        match last(request) {
            None => tag_list(&["1.25", "1.26"]).header(
                "Link",
                r#"</v2/library/nginx/tags/list?n=2&last=1.26>; rel="next""#,
            ),
            Some("1.26") => tag_list(&["1.27", "1.27.1"]).header(
                "Link",
                &format!(
                    r#"<{}/v2/library/nginx/tags/list?n=2&last=1.27.1>; rel="next""#,
                    request.origin()
                ),
            ),
            Some("1.27.1") => tag_list(&["latest"]),
            Some(_) => Reply::new(400),
        }
    }

    fn bearer_challenge(request: &Request, scope: bool) -> Reply {
        let mut challenge = format!(
            r#"Bearer realm="{}/token",service="registry.docker.io""#,
            request.origin()
        );
        if scope {
            challenge += r#",scope="repository:library/nginx:pull""#;
        }
        Reply::json(
            401,
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        )
        .header("WWW-Authenticate", &challenge)
    }

    /// Docker Hub's way: tags for a token from its realm.
    fn token_registry(request: &Request) -> Reply {
        match request.path.as_str() {
            "/token" => Reply::json(200, &format!(r#"{{"token":"{TOKEN}","expires_in":300}}"#)),
            TAGS if request.header("authorization") == Some(&format!("Bearer {TOKEN}")) => {
                pages(request)
            }
            TAGS => bearer_challenge(request, true),
            _ => Reply::new(404),
        }
    }

    #[tokio::test]
    async fn a_token_from_the_challenges_realm_opens_every_page() {
        let server = TestServer::start(token_registry).await;
        let tags = list(&server, None).await.unwrap();
        assert_eq!(tags, ["1.25", "1.26", "1.27", "1.27.1", "latest"]);

        let requests = server.requests();
        let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, [TAGS, "/token", TAGS, TAGS, TAGS]);
        assert_eq!(requests[0].query, "n=1000");
        assert_eq!(requests[0].header("authorization"), None);
        assert!(requests[0]
            .header("user-agent")
            .is_some_and(|agent| agent.starts_with("ecr-cache-warmer/")));
        assert_eq!(
            requests[1].query,
            "service=registry.docker.io&scope=repository%3Alibrary%2Fnginx%3Apull"
        );
        assert_eq!(requests[1].header("authorization"), None, "no login");
        assert_eq!(requests[2].query, "n=1000");
        assert_eq!(requests[3].query, "n=2&last=1.26");
        assert_eq!(requests[4].query, "n=2&last=1.27.1");
        for page in &requests[2..] {
            assert_eq!(
                page.header("authorization"),
                Some("Bearer T0K3N"),
                "{page:?}"
            );
        }
    }

    #[tokio::test]
    async fn without_a_scope_in_the_challenge_the_repository_pull_scope_is_asked() {
        let server = TestServer::start(|request: &Request| match request.path.as_str() {
            "/token" => Reply::json(200, r#"{"access_token":"T0K3N"}"#),
            TAGS if request.header("authorization").is_some() => tag_list(&["a"]),
            _ => bearer_challenge(request, false),
        })
        .await;
        assert_eq!(list(&server, None).await.unwrap(), ["a"]);
        assert_eq!(
            server.requests_for("/token")[0].query,
            "service=registry.docker.io&scope=repository%3Alibrary%2Fnginx%3Apull"
        );
    }

    #[tokio::test]
    async fn the_login_goes_to_the_token_endpoint_as_basic() {
        let server = TestServer::start(token_registry).await;
        let tags = list(&server, Some(&login())).await.unwrap();
        assert_eq!(tags.len(), 5);
        let token = server.requests_for("/token");
        assert_eq!(token.len(), 1);
        assert_eq!(token[0].header("authorization"), Some(BASIC));
        assert_eq!(server.requests_for(TAGS)[0].header("authorization"), None);
    }

    #[tokio::test]
    async fn a_refused_login_is_unauthorized_and_never_shown() {
        let server = TestServer::start(|request: &Request| match request.path.as_str() {
            "/token" => Reply::json(401, r#"{"details":"incorrect username or password"}"#),
            _ => bearer_challenge(request, true),
        })
        .await;
        let login = login();
        let error = list(&server, Some(&login)).await.unwrap_err();
        assert_eq!(error.kind(), "unauthorized");
        assert!(!error.is_retryable());
        let message = error.to_string();
        for expected in [
            "library/nginx on docker.io",
            "401 Unauthorized",
            "incorrect username or password",
            "ecr-pullthroughcache/",
            "accessToken",
        ] {
            assert!(message.contains(expected), "{expected:?} in {message}");
        }
        let shown = format!("{error} {error:?} {login:?}");
        for hidden in [SECRET, "b2N0b2NhdDpzM2NyM3QtdmFsdWU", "octocat"] {
            assert!(!shown.contains(hidden), "{hidden:?} in {shown}");
        }
        assert_eq!(server.requests_for("/token").len(), 1, "not retried");
    }

    #[tokio::test]
    async fn anonymous_refusal_says_to_give_the_rule_a_credential() {
        let server = TestServer::start(|request: &Request| match request.path.as_str() {
            "/token" => Reply::json(200, r#"{"token":"T0K3N"}"#),
            _ => bearer_challenge(request, true),
        })
        .await;
        let error = list(&server, None).await.unwrap_err();
        assert_eq!(error.kind(), "unauthorized");
        let message = error.to_string();
        assert!(message.contains("anonymously"), "{message}");
        assert!(
            message.contains("UNAUTHORIZED: authentication required"),
            "{message}"
        );
        assert_eq!(
            server.requests_for(TAGS).len(),
            2,
            "once anonymous, once with the token"
        );
    }

    #[tokio::test]
    async fn an_expired_token_is_renewed_once_on_a_later_page() {
        let server = TestServer::start(|request: &Request| match request.path.as_str() {
            "/token" => Reply::json(200, &format!(r#"{{"token":"T{}"}}"#, request.nth + 1)),
            TAGS => match (request.header("authorization"), last(request)) {
                (Some(_), None) => tag_list(&["a"]).header(
                    "Link",
                    r#"</v2/library/nginx/tags/list?last=a>; rel="next""#,
                ),
                (Some("Bearer T2"), Some("a")) => tag_list(&["b"]),
                _ => bearer_challenge(request, true),
            },
            _ => Reply::new(404),
        })
        .await;
        assert_eq!(list(&server, None).await.unwrap(), ["a", "b"]);
        assert_eq!(server.requests_for("/token").len(), 2);
    }

    #[tokio::test]
    async fn a_basic_challenge_is_answered_with_the_login() {
        let basic = |request: &Request| match request.header("authorization") {
            Some(BASIC) => tag_list(&["a"]),
            _ => Reply::new(401).header("WWW-Authenticate", r#"Basic realm="Registry""#),
        };
        let server = TestServer::start(basic).await;
        assert_eq!(list(&server, Some(&login())).await.unwrap(), ["a"]);
        assert_eq!(server.requests().len(), 2);

        let server = TestServer::start(basic).await;
        let error = list(&server, None).await.unwrap_err();
        assert_eq!(error.kind(), "unauthorized");
        assert_eq!(server.requests().len(), 1);
    }

    #[tokio::test]
    async fn a_429_is_tried_again_once_its_retry_after_has_passed() {
        let server = TestServer::start(|request: &Request| match request.nth {
            0 => Reply::json(
                429,
                r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
            )
            .header("Retry-After", "1"),
            _ => tag_list(&["a"]),
        })
        .await;
        let started = std::time::Instant::now();
        assert_eq!(list(&server, None).await.unwrap(), ["a"]);
        assert_eq!(server.requests().len(), 2);
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_503_is_tried_again() {
        let server = TestServer::start(|request: &Request| match request.nth {
            0 => Reply::new(503),
            _ => tag_list(&["a"]),
        })
        .await;
        assert_eq!(list(&server, None).await.unwrap(), ["a"]);
        assert_eq!(server.requests().len(), 2);
    }

    #[tokio::test]
    async fn throttling_that_lasts_says_so_with_its_retry_after() {
        let server = TestServer::start(|_: &Request| {
            Reply::json(
                429,
                r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"pull rate limit"}]}"#,
            )
        })
        .await;
        let error = list(&server, None).await.unwrap_err();
        assert_eq!(error.kind(), "throttled");
        assert!(error.is_retryable());
        assert_eq!(server.requests().len(), 4);
        let message = error.to_string();
        assert!(
            message.contains("TOOMANYREQUESTS: pull rate limit"),
            "{message}"
        );
        assert!(message.contains("after 4 attempts"), "{message}");
        assert!(message.contains("rate limit"), "{message}");
    }

    #[tokio::test]
    async fn a_missing_repository_is_not_found_with_the_library_hint() {
        let server = TestServer::start(|_: &Request| {
            Reply::json(
                404,
                r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#,
            )
        })
        .await;
        let error = list(&server, None).await.unwrap_err();
        assert_eq!(error.kind(), "not-found");
        assert!(!error.is_retryable());
        let message = error.to_string();
        assert!(message.contains("NAME_UNKNOWN"), "{message}");
        assert!(message.contains("library/<name>"), "{message}");
        assert_eq!(server.requests().len(), 1);
    }

    #[tokio::test]
    async fn the_deadline_stops_retries() {
        let server = TestServer::start(|_: &Request| Reply::new(503)).await;
        let lister = lister(&server).with_retries(100, Duration::from_millis(50));
        let deadline = Instant::now() + Duration::from_secs(2);
        let error = lister
            .list("docker.io", "library/nginx", None, Some(deadline))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), "unavailable");
        // Each wait at least doubles from 50 ms: 2 s leave room for 6 attempts.
        let attempts = server.requests().len();
        assert!((2..=6).contains(&attempts), "{attempts} attempts");
    }

    #[tokio::test]
    async fn a_retry_after_beyond_the_deadline_is_not_waited_for() {
        let server =
            TestServer::start(|_: &Request| Reply::new(503).header("Retry-After", "30")).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        let error = lister(&server)
            .list("docker.io", "library/nginx", None, Some(deadline))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), "unavailable");
        assert!(error.to_string().contains("Retry-After 30 s"), "{error}");
        assert_eq!(server.requests().len(), 1);
    }

    #[tokio::test]
    async fn a_retry_after_longer_than_a_minute_is_not_waited_for() {
        let server = TestServer::start(|_: &Request| {
            Reply::json(429, r#"{"errors":[]}"#).header("Retry-After", "120")
        })
        .await;
        let error = list(&server, None).await.unwrap_err();
        assert_eq!(error.kind(), "throttled");
        assert!(error.to_string().contains("Retry-After 120 s"), "{error}");
        assert_eq!(server.requests().len(), 1);
    }

    #[tokio::test]
    async fn no_request_starts_after_the_deadline() {
        let server = TestServer::start(|_: &Request| tag_list(&["a"])).await;
        let error = lister(&server)
            .list("docker.io", "library/nginx", None, Some(Instant::now()))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), "deadline");
        assert!(server.requests().is_empty());
    }

    #[tokio::test]
    async fn an_unreachable_registry_is_unavailable_with_the_route_hint() {
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = closed.local_addr().unwrap();
        drop(closed);
        let endpoints = Endpoints::parse([format!("quay.io=http://{address}")]).unwrap();
        let error = TagLister::new(endpoints)
            .with_retries(2, Duration::from_millis(1))
            .list("quay.io", "prometheus/node-exporter", None, None)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), "unavailable");
        let message = error.to_string();
        assert!(message.contains("after 2 attempts"), "{message}");
        assert!(message.contains("network route"), "{message}");
    }

    #[tokio::test]
    async fn an_endpoint_under_a_path_keeps_it_on_every_page() {
        const PREFIXED: &str = "/upstream/quay.io/v2/prometheus/node-exporter/tags/list";
        let server = TestServer::start(|request: &Request| match (request.path.as_str(), last(request)) {
            (PREFIXED, None) => Reply::json(200, r#"{"tags":["a"]}"#).header(
                "Link",
                r#"</v2/prometheus/node-exporter/tags/list?n=1&last=a>; rel="next""#,
            ),
            (PREFIXED, Some("a")) => Reply::json(200, r#"{"tags":["b"]}"#).header(
                "Link",
                r#"</upstream/quay.io/v2/prometheus/node-exporter/tags/list?n=1&last=b>; rel="next""#,
            ),
            (PREFIXED, Some("b")) => Reply::json(200, r#"{"tags":null}"#),
            _ => Reply::new(404),
        })
        .await;
        let endpoints =
            Endpoints::parse([format!("quay.io={}/upstream/quay.io", server.url)]).unwrap();
        let tags = TagLister::new(endpoints)
            .list("quay.io", "prometheus/node-exporter", None, None)
            .await
            .unwrap();
        assert_eq!(tags, ["a", "b"]);
        assert_eq!(server.requests_for(PREFIXED).len(), 3);
    }

    #[tokio::test]
    async fn a_link_back_to_a_listed_page_ends_paging() {
        let server = TestServer::start(|_: &Request| {
            tag_list(&["a"]).header(
                "Link",
                r#"</v2/library/nginx/tags/list?n=1000>; rel="next""#,
            )
        })
        .await;
        let error = list(&server, None).await.unwrap_err();
        assert_eq!(error.kind(), "protocol");
        assert_eq!(server.requests().len(), 1);
    }

    #[tokio::test]
    async fn a_body_that_is_no_tag_list_is_a_protocol_error() {
        let server =
            TestServer::start(|_: &Request| Reply::new(200).body("<html>hello</html>")).await;
        let error = list(&server, None).await.unwrap_err();
        assert_eq!(error.kind(), "protocol");
        assert!(error.to_string().contains("upstream endpoint"), "{error}");
    }

    #[tokio::test]
    async fn what_is_not_a_registry_or_repository_is_refused_before_asking() {
        let lister = TagLister::new(Endpoints::default());
        for (registry, repository) in [
            ("quay.io/x", "a/b"),
            ("quay.io", "a/../b"),
            ("quay.io", "a?b"),
            ("quay.io", "A/b"),
            ("quay.io", ""),
        ] {
            let error = lister
                .list(registry, repository, None, None)
                .await
                .unwrap_err();
            assert_eq!(error.kind(), "invalid", "{registry} {repository}");
        }
    }

    #[test]
    fn the_next_link_is_found_among_others() {
        assert_eq!(
            next_in(r#"</v2/library/nginx/tags/list?n=2&last=x>; rel="next""#),
            Some("/v2/library/nginx/tags/list?n=2&last=x")
        );
        assert_eq!(
            next_in(
                r#"<https://a.example/first>; rel="first", <https://a.example/2>; title="p;2"; REL=next"#
            ),
            Some("https://a.example/2")
        );
        assert_eq!(next_in(r#"</a>; rel="prev next""#), Some("/a"));
        assert_eq!(next_in(r#"</a>; rel="nextish""#), None);
        assert_eq!(next_in(r#"</a>; rel="prev""#), None);
        assert_eq!(next_in(""), None);
    }

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    fn resolved(base: &str, answered: &str, target: &str) -> Result<String, Problem> {
        resolve(&url(base), &url(answered), target).map(String::from)
    }

    #[test]
    fn a_link_resolves_against_the_url_that_answered() {
        let page = "https://quay.io/v2/a/b/tags/list?n=2";
        let next = "https://quay.io/v2/a/b/tags/list?n=2&last=x";
        assert_eq!(
            resolved("https://quay.io", page, "/v2/a/b/tags/list?n=2&last=x").unwrap(),
            next
        );
        assert_eq!(
            resolved("https://quay.io", page, "list?n=2&last=x").unwrap(),
            next
        );
        assert_eq!(resolved("https://quay.io", page, next).unwrap(), next);

        let base = "http://127.0.0.1:5000/upstream/quay.io";
        let page = "http://127.0.0.1:5000/upstream/quay.io/v2/a/b/tags/list?n=2";
        let next = "http://127.0.0.1:5000/upstream/quay.io/v2/a/b/tags/list?n=2&last=x";
        assert_eq!(
            resolved(base, page, "/v2/a/b/tags/list?n=2&last=x").unwrap(),
            next
        );
        assert_eq!(
            resolved(base, page, "/upstream/quay.io/v2/a/b/tags/list?n=2&last=x").unwrap(),
            next
        );
        assert_eq!(resolved(base, page, next).unwrap(), next);
    }

    #[test]
    fn a_link_to_another_origin_is_refused() {
        let page = "https://quay.io/v2/a/b/tags/list";
        for target in [
            "https://elsewhere.example/v2/a/b/tags/list?last=x",
            "http://quay.io/v2/a/b/tags/list?last=x",
            "//elsewhere.example/x",
        ] {
            let problem = resolved("https://quay.io", page, target).unwrap_err();
            assert_eq!(problem.kind(), "protocol", "{target}");
        }
    }

    #[test]
    fn a_login_debugs_as_redacted() {
        let shown = format!("{:?}", login());
        assert!(
            !shown.contains("octocat") && !shown.contains(SECRET),
            "{shown}"
        );
    }
}
