//! A manifest's digest and type read upstream without pulling it: a HEAD of
//! `/v2/<name>/manifests/<tag or digest>`, which Docker Hub does not count as
//! a pull, and the rate limit it reports on the way.

use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::{Method, Url};

use super::error::Problem;
use super::session::{Cap, Session};
use super::tags::under;

/// Every manifest type a pull may get: the registry answers with the type it
/// has, so that an index is seen as one.
pub const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
];

/// The two types of a multi-arch index.
const INDEX_TYPES: [&str; 2] = [MANIFEST_TYPES[1], MANIFEST_TYPES[3]];

/// Whether a media type is a multi-arch index.
pub fn is_index(media_type: &str) -> bool {
    INDEX_TYPES.contains(&media_type)
}

/// A HEAD has no body; what an error answer holds is read for its message.
const HEAD: Cap = Cap {
    bytes: 64 << 10,
    what: "a manifest HEAD",
};

/// What a HEAD of a manifest says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    /// `Docker-Content-Digest`, e.g. `sha256:…`; registries may leave it out.
    pub digest: Option<String>,
    /// The manifest's media type.
    pub media_type: Option<String>,
    /// Docker Hub's `ratelimit-limit` and `ratelimit-remaining`.
    pub rate_limit: Option<RateLimit>,
}

/// A registry's pull quota as it reports it (`ratelimit-limit: 100;w=21600`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: u64,
    pub remaining: u64,
    /// The window the quota is counted over, in seconds, when given.
    pub window_seconds: Option<u64>,
}

pub(super) async fn head(
    session: &mut Session<'_>,
    base: &Url,
    repository: &str,
    reference: &str,
) -> Result<ManifestHead, Problem> {
    if !is_tag(reference) && !is_digest(reference) {
        return Err(Problem::Invalid(format!(
            "{reference:?} is neither a tag (up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-') nor a digest (algorithm:hex, e.g. sha256:…)"
        )));
    }
    let url = under(base, &format!("v2/{repository}/manifests/{reference}"))?;
    let answer = session
        .fetch(Method::HEAD, &url, &MANIFEST_TYPES, HEAD)
        .await?;
    let answer = session.check(answer)?;
    let header = |name: &str| {
        answer
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(|value| value.trim().to_string())
            .filter(|value| !value.is_empty())
    };
    Ok(ManifestHead {
        digest: header("docker-content-digest"),
        media_type: header(CONTENT_TYPE.as_str()),
        rate_limit: rate_limit(&answer.headers),
    })
}

/// An index's manifest, read only for the digests it lists: at most this.
const INDEX: Cap = Cap {
    bytes: 1 << 20,
    what: "an index manifest",
};

/// The digests of the manifests an index lists (its platforms). A GET:
/// Docker Hub counts it as a pull, so callers ask only when a HEAD cannot
/// answer.
pub(super) async fn children(
    session: &mut Session<'_>,
    base: &Url,
    repository: &str,
    reference: &str,
) -> Result<Vec<String>, Problem> {
    if !is_tag(reference) && !is_digest(reference) {
        return Err(Problem::Invalid(format!(
            "{reference:?} is neither a tag nor a digest"
        )));
    }
    let url = under(base, &format!("v2/{repository}/manifests/{reference}"))?;
    let answer = session
        .fetch(Method::GET, &url, &INDEX_TYPES, INDEX)
        .await?;
    let answer = session.check(answer)?;
    #[derive(serde::Deserialize)]
    struct Listed {
        digest: String,
    }
    #[derive(serde::Deserialize)]
    struct Index {
        #[serde(default)]
        manifests: Vec<Listed>,
    }
    let index: Index = serde_json::from_slice(&answer.body).map_err(|error| {
        Problem::Protocol(format!(
            "the manifest at {} does not parse: {error}",
            answer.url
        ))
    })?;
    Ok(index
        .manifests
        .into_iter()
        .map(|listed| listed.digest)
        .collect())
}

/// Both headers, or nothing: a limit without what remains of it says little.
fn rate_limit(headers: &HeaderMap) -> Option<RateLimit> {
    let quota = |name: &str| quota(headers.get(name)?.to_str().ok()?);
    let (limit, window) = quota("ratelimit-limit")?;
    let (remaining, remaining_window) = quota("ratelimit-remaining")?;
    Some(RateLimit {
        limit,
        remaining,
        window_seconds: window.or(remaining_window),
    })
}

/// `100;w=21600`: a count, and the window in seconds when it is given.
fn quota(value: &str) -> Option<(u64, Option<u64>)> {
    let mut parts = value.split(';').map(str::trim);
    let count = parts.next()?.parse().ok()?;
    let window = parts
        .filter_map(|part| part.split_once('='))
        .find(|(key, _)| key.trim().eq_ignore_ascii_case("w"))
        .and_then(|(_, seconds)| seconds.trim().parse().ok());
    Some((count, window))
}

/// A tag as Docker's grammar has it: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn is_tag(text: &str) -> bool {
    text.len() <= 128
        && text
            .bytes()
            .next()
            .is_some_and(|first| first.is_ascii_alphanumeric() || first == b'_')
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn is_digest(text: &str) -> bool {
    let Some((algorithm, hex)) = text.split_once(':') else {
        return false;
    };
    !algorithm.is_empty()
        && algorithm
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
        && hex.len() >= 32
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests;
