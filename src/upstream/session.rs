//! The requests of one call to an upstream registry, and the rules every one
//! of them follows, whatever it asks.
//!
//! Authentication answers the registry's `WWW-Authenticate` challenge: a
//! token from the realm of a Bearer challenge, or the login itself for Basic.
//! What a registry hands out goes back only to the origin that asked for it,
//! and the login only to the registry's own origin and the realm it names:
//! a registry may redirect elsewhere (registry.k8s.io does, to Artifact
//! Registry), and what it redirects to gets at most an anonymous token of
//! its own. Redirects go to https only, a few at most; bodies are read up to
//! a cap. Throttling, server faults and network failures are tried again with
//! [`Backoff`], waiting at least as long as a `Retry-After` asks.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, ACCEPT, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::redirect::{Attempt, Policy};
use reqwest::{Client, Method, RequestBuilder, StatusCode, Url};
use serde::Deserialize;

use super::challenge::{parse_challenges, Challenge};
use super::credential::Login;
use super::error::Problem;
use super::registry::HttpRegistry;
use crate::backoff::Backoff;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A registry asking for a longer pause is not waited for: the run would
/// hold its other work that long.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
const USER_AGENT: &str = concat!("ecr-cache-warmer/", env!("CARGO_PKG_VERSION"));
/// How much of a registry's error message goes into ours.
const MESSAGE_MAX_CHARS: usize = 200;
/// Redirects followed for one request: registries use one, a CDN two.
const MAX_REDIRECTS: usize = 5;
/// Origins whose 401 one request answers: the registry's, and the one it
/// redirects to.
const MAX_CHALLENGES: usize = 2;
/// A token answer is a few KiB of JSON, a JWT at most.
const TOKEN_ANSWER: Cap = Cap {
    bytes: 64 << 10,
    what: "a token answer",
};
/// What is kept of a refusal or a fault, for its message.
const ERROR_BODY_LIMIT: usize = 64 << 10;

/// A token without `expires_in` lasts 60 s (distribution's token spec).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// A token is not sent in its last seconds, when it may expire on the way.
const TOKEN_MARGIN: Duration = Duration::from_secs(5);

/// The most of a body read for one purpose, named for the message when a
/// body runs over it.
#[derive(Debug, Clone, Copy)]
pub struct Cap {
    pub bytes: usize,
    pub what: &'static str,
}

/// A username and secret for an upstream registry, or a token: what goes
/// with a request to one origin.
#[derive(Clone)]
enum Credential {
    Basic(Login),
    Bearer(Token),
}

/// A token from a realm, good until `expires`; Debug does not print it.
#[derive(Clone)]
pub struct Token {
    value: String,
    expires: Instant,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("value", &"<redacted>")
            .field("expires", &self.expires)
            .finish()
    }
}

impl Token {
    /// Whether it is good for another call, not only for the next request.
    pub fn is_fresh(&self) -> bool {
        Instant::now() + TOKEN_MARGIN < self.expires
    }

    fn has_expired(&self) -> bool {
        Instant::now() >= self.expires
    }
}

/// Tokens kept between calls: one per origin, repository and login.
pub type TokenKey = (String, String, Option<Login>);

/// One call of [`HttpRegistry`]: its requests share what the registry asked
/// for.
pub struct Session<'a> {
    registry: &'a HttpRegistry,
    /// The registry's own origin, the one the login may go to.
    origin: String,
    repository: &'a str,
    login: Option<&'a Login>,
    deadline: Option<Instant>,
    /// What each origin last asked for, by its serialization.
    credentials: HashMap<String, Credential>,
}

/// A response read to its end, or to its cap: trying again covers reading
/// the body too.
pub struct Answer {
    pub method: Method,
    pub url: Url,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

#[derive(Deserialize)]
struct ErrorBody {
    errors: Option<Vec<ErrorEntry>>,
    details: Option<String>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    code: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// A redirect not followed, and why.
#[derive(Debug, thiserror::Error)]
#[error("{from} redirects to {to}, which is not followed: {why}")]
struct RedirectRefused {
    from: String,
    to: String,
    why: &'static str,
}

/// The HTTP client of upstream registries; `timeout` is also set on each
/// request, to end it at the deadline when that comes sooner.
pub fn new_client() -> Client {
    let builder = || {
        Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(Policy::custom(follow))
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

fn follow(attempt: Attempt) -> reqwest::redirect::Action {
    let Some(from) = attempt.previous().last() else {
        return attempt.follow();
    };
    let refused = |why| RedirectRefused {
        from: from.to_string(),
        to: attempt.url().to_string(),
        why,
    };
    if attempt.previous().len() > MAX_REDIRECTS {
        let error = refused("more than 5 redirects in a row");
        return attempt.error(error);
    }
    match redirect_allowed(from, attempt.url()) {
        Ok(()) => attempt.follow(),
        Err(why) => {
            let error = refused(why);
            attempt.error(error)
        }
    }
}

/// A redirect leads to https, or stays on its origin. An endpoint given as
/// plain http (a mirror or stand-in on a host the user chose) may also move
/// to another port of its host.
pub fn redirect_allowed(from: &Url, to: &Url) -> Result<(), &'static str> {
    let plain_on_its_host =
        from.scheme() == "http" && to.scheme() == "http" && from.host() == to.host();
    match to.scheme() == "https" || to.origin() == from.origin() || plain_on_its_host {
        true => Ok(()),
        false => Err("a redirect is followed only to https, or within its own origin"),
    }
}

impl<'a> Session<'a> {
    pub fn new(
        registry: &'a HttpRegistry,
        base: &Url,
        repository: &'a str,
        login: Option<&'a Login>,
        deadline: Option<Instant>,
    ) -> Session<'a> {
        Session {
            registry,
            origin: base.origin().ascii_serialization(),
            repository,
            login,
            deadline,
            credentials: HashMap::new(),
        }
    }

    /// The answer to `method url` with what the registry asks for: a 401 is
    /// answered once per origin, which also renews an expired token. After
    /// a redirect, the answer's URL is where it ended, and a 401 there is
    /// answered for that origin.
    pub async fn fetch(
        &mut self,
        method: Method,
        url: &Url,
        accept: &[&str],
        cap: Cap,
    ) -> Result<Answer, Problem> {
        let mut url = url.clone();
        let mut answered = HashSet::new();
        loop {
            let answer = self.send_to(&method, &url, accept, cap).await?;
            let origin = answer.url.origin().ascii_serialization();
            if answer.status != StatusCode::UNAUTHORIZED
                || answered.len() == MAX_CHALLENGES
                || !answered.insert(origin)
            {
                return Ok(answer);
            }
            self.authenticate(&answer).await?;
            url = answer.url;
        }
    }

    /// An answer that is no success as the problem it is.
    pub fn check(&self, answer: Answer) -> Result<Answer, Problem> {
        match answer.status {
            status if status.is_success() => Ok(answer),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                let origin = answer.url.origin().ascii_serialization();
                Err(self.refused(&answer, self.login_for(&origin)))
            }
            status
                if status == StatusCode::NOT_FOUND
                    || matches!(
                        answer.error_code().as_deref(),
                        Some("NAME_UNKNOWN" | "MANIFEST_UNKNOWN")
                    ) =>
            {
                Err(Problem::NotFound {
                    answer: answer.describe(),
                })
            }
            _ => Err(Problem::Protocol(answer.describe())),
        }
    }

    /// Whether `url` is on the registry's own origin.
    pub fn is_own(&self, url: &Url) -> bool {
        url.origin().ascii_serialization() == self.origin
    }

    async fn send_to(
        &mut self,
        method: &Method,
        url: &Url,
        accept: &[&str],
        cap: Cap,
    ) -> Result<Answer, Problem> {
        let credential = self.credential_for(url);
        let client = self.registry.client();
        self.send(
            || {
                let mut request = client.request(method.clone(), url.clone());
                if !accept.is_empty() {
                    request = request.header(ACCEPT, accept.join(", "));
                }
                apply(credential.as_ref(), request)
            },
            cap,
        )
        .await
    }

    /// What goes with a request to `url`'s origin: what it asked for, or a
    /// token kept from an earlier call; never one that has expired.
    fn credential_for(&mut self, url: &Url) -> Option<Credential> {
        let origin = url.origin().ascii_serialization();
        if let Some(Credential::Bearer(token)) = self.credentials.get(&origin) {
            if token.has_expired() {
                self.credentials.remove(&origin);
            }
        }
        if !self.credentials.contains_key(&origin) {
            let kept = self.registry.kept_token(&self.token_key(&origin))?;
            self.credentials
                .insert(origin.clone(), Credential::Bearer(kept));
        }
        self.credentials.get(&origin).cloned()
    }

    /// The login, when `origin` may have it.
    fn login_for(&self, origin: &str) -> Option<&'a Login> {
        self.login.filter(|_| origin == self.origin)
    }

    fn token_key(&self, origin: &str) -> TokenKey {
        (
            origin.to_string(),
            self.repository.to_string(),
            self.login_for(origin).cloned(),
        )
    }

    /// The registry refused what went with the request: the login (or a
    /// token got with it), or nothing.
    fn refused(&self, answer: &Answer, login: Option<&Login>) -> Problem {
        Problem::Unauthorized {
            answer: answer.describe(),
            anonymous: login.is_none(),
        }
    }

    /// Takes up what an origin's 401 asks for: a token from the realm of its
    /// Bearer challenge, or the login for a Basic one.
    async fn authenticate(&mut self, refused: &Answer) -> Result<(), Problem> {
        let origin = refused.url.origin().ascii_serialization();
        let challenges: Vec<Challenge> = refused
            .headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(parse_challenges)
            .collect();
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            let token = self.token(bearer, &refused.url).await?;
            self.registry
                .keep_token(self.token_key(&origin), token.clone());
            self.credentials.insert(origin, Credential::Bearer(token));
            return Ok(());
        }
        match self.login_for(&origin) {
            Some(login) if challenges.iter().any(|c| c.scheme == "basic") => {
                self.credentials
                    .insert(origin, Credential::Basic(login.clone()));
                Ok(())
            }
            _ => Err(self.refused(refused, self.login_for(&origin))),
        }
    }

    /// A token from the challenge's realm, asked for with the login (Basic)
    /// when the challenge is the registry's own.
    async fn token(&self, challenge: &Challenge, challenged: &Url) -> Result<Token, Problem> {
        let realm = challenge.param("realm").ok_or_else(|| {
            Problem::Protocol(format!(
                "the Bearer challenge from {challenged} has no realm"
            ))
        })?;
        let mut url = realm_url(challenged, realm)?;
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
        let login = self.login_for(&challenged.origin().ascii_serialization());
        let credential = login.cloned().map(Credential::Basic);
        let client = self.registry.client();
        let answer = self
            .send(
                || apply(credential.as_ref(), client.get(url.clone())),
                TOKEN_ANSWER,
            )
            .await?;
        match answer.status {
            status if status.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(self.refused(&answer, login))
            }
            _ => return Err(Problem::Protocol(answer.describe())),
        }
        // serde's message could quote the body, which holds the token.
        let token: TokenAnswer = serde_json::from_slice(&answer.body)
            .map_err(|_| Problem::Protocol(format!("the token from {} is not JSON", answer.url)))?;
        let lifetime = token
            .expires_in
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        let value = token
            .token
            .or(token.access_token)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| Problem::Protocol(format!("{} answered without a token", answer.url)))?;
        Ok(Token {
            value,
            expires: Instant::now() + lifetime,
        })
    }

    /// Sends the request `request` builds, again after throttling, server
    /// faults and network failures while attempts and time remain.
    async fn send(
        &self,
        request: impl Fn() -> RequestBuilder,
        cap: Cap,
    ) -> Result<Answer, Problem> {
        let registry = self.registry;
        let mut backoff = Backoff::new(registry.backoff, registry.max_attempts, self.deadline);
        let mut attempts = 0;
        loop {
            let timeout = self.request_timeout().ok_or(Problem::Deadline)?;
            attempts += 1;
            let (problem, retry_after) = match read(request().timeout(timeout), cap.bytes).await {
                Ok(answer) if !is_transient(answer.status) => return Ok(answer),
                Ok(answer) => answer.transient(attempts),
                Err(Unread::TooLarge(request)) => {
                    return Err(Problem::TooLarge {
                        request,
                        what: cap.what,
                        limit: cap.bytes,
                    })
                }
                Err(Unread::Http(error)) if refused_redirect(&error).is_some() => {
                    let refused = refused_redirect(&error).map(ToString::to_string);
                    return Err(Problem::Insecure(refused.unwrap_or_default()));
                }
                Err(Unread::Http(error)) if is_transient_error(&error) => {
                    tracing::debug!(error = %chain(&error), "upstream registry unreachable");
                    let problem = Problem::Unavailable {
                        answer: chain(&error),
                        attempts,
                        retry_after: None,
                    };
                    (problem, None)
                }
                Err(Unread::Http(error)) => return Err(Problem::Protocol(chain(&error))),
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

/// Where a challenge's realm is: https when the registry is, as the login
/// may go there.
pub fn realm_url(challenged: &Url, realm: &str) -> Result<Url, Problem> {
    let url = challenged.join(realm).map_err(|error| {
        Problem::Protocol(format!("the Bearer realm {realm:?} is not a URL: {error}"))
    })?;
    if challenged.scheme() == "https" && url.scheme() != "https" {
        return Err(Problem::Insecure(format!(
            "the Bearer realm {url} of {challenged} is not https"
        )));
    }
    Ok(url)
}

fn apply(credential: Option<&Credential>, request: RequestBuilder) -> RequestBuilder {
    match credential {
        None => request,
        Some(Credential::Basic(login)) => request.basic_auth(&login.username, Some(&login.secret)),
        Some(Credential::Bearer(token)) => request.bearer_auth(&token.value),
    }
}

/// Why a response was not read: the request failed, or the body of the
/// request named runs over the cap.
enum Unread {
    Http(reqwest::Error),
    TooLarge(String),
}

impl From<reqwest::Error> for Unread {
    fn from(error: reqwest::Error) -> Unread {
        Unread::Http(error)
    }
}

/// Reads the body as it comes, and stops at `limit`: a registry's answer is
/// not trusted to be small. A refusal or fault is kept to its cap, for its
/// message.
async fn read(request: RequestBuilder, limit: usize) -> Result<Answer, Unread> {
    let (client, request) = request.build_split();
    let request = request?;
    let method = request.method().clone();
    let mut response = client.execute(request).await?;
    let (url, status) = (response.url().clone(), response.status());
    tracing::debug!(%method, %url, %status, "upstream registry answered");
    let limit = match status.is_success() {
        true => limit,
        false => ERROR_BODY_LIMIT,
    };
    let too_large = || Unread::TooLarge(format!("{method} {url}"));
    // A HEAD's Content-Length is that of the body a GET would have.
    let declared = response.content_length().filter(|_| method != Method::HEAD);
    if status.is_success() && declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    let headers = response.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            if status.is_success() {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk[..limit - body.len()]);
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer {
        method,
        url,
        status,
        headers,
        body,
    })
}

fn refused_redirect(error: &reqwest::Error) -> Option<&RedirectRefused> {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<RedirectRefused>() {
            return Some(refused);
        }
        source = cause.source();
    }
    None
}

impl Answer {
    /// "GET <url> answered HTTP 404 Not Found (NAME_UNKNOWN: …)".
    pub fn describe(&self) -> String {
        let mut text = format!("{} {} answered HTTP {}", self.method, self.url, self.status);
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
            Some(ErrorEntry {
                code: Some(code),
                message: Some(message),
            }) => Some(format!("{code}: {message}")),
            Some(ErrorEntry { code, message }) => code.or(message),
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
