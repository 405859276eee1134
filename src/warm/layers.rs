//! Layers: whether every blob of a warmed image is on ECR's own storage.
//!
//! GetDownloadUrlForLayer answers with the URL a client would download the
//! blob from. Once ECR holds the blob, that URL is a pre-signed S3 URL on its
//! layer bucket, `prod-<region>-starport-layer-bucket`, which private subnets
//! reach through the S3 gateway endpoint. Users have seen other URLs on first
//! pulls: the upstream's own blob storage or CDN, which a private subnet
//! cannot reach. That host rule is an observation of ECR, not an API promise;
//! `--layers request` asks for every blob without judging its URL.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Instant;

use futures_util::stream::{self, StreamExt};

use super::call::{download_url_code, failed_call, Attempted, Engine};
use crate::backoff::Backoff;
use crate::outcome::Failure;

/// How much of an image's blobs a warm asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LayerMode {
    /// Manifests only: no layer calls.
    None,
    /// Ask for every blob and count errors, without judging the URLs.
    Request,
    /// A blob counts only when its URL is on ECR's layer storage.
    #[default]
    Verify,
}

impl FromStr for LayerMode {
    type Err = String;

    fn from_str(text: &str) -> Result<LayerMode, String> {
        match text.trim() {
            "none" => Ok(LayerMode::None),
            "request" => Ok(LayerMode::Request),
            "verify" => Ok(LayerMode::Verify),
            _ => Err("none, request or verify".to_string()),
        }
    }
}

/// Where one blob stands after the warm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobState {
    Cached,
    /// Not (yet) on ECR's storage, and why.
    Pending(String),
    Failed(Failure),
}

/// Asks for every blob of a repository once; in `verify` mode pending blobs
/// are asked again with backoff until the layer wait ends (never past the
/// warm's deadline). A blob the deadline left unasked is pending.
pub async fn check(
    engine: &Engine<'_>,
    repository: &str,
    digests: &[String],
) -> HashMap<String, BlobState> {
    let options = engine.options;
    let not_asked = BlobState::Pending("not asked before the deadline".to_string());
    let mut states: HashMap<String, BlobState> = digests
        .iter()
        .map(|digest| (digest.clone(), not_asked.clone()))
        .collect();
    let wait_until = Instant::now()
        .checked_add(options.layer_wait)
        .map(|end| options.deadline.map_or(end, |deadline| end.min(deadline)))
        .or(options.deadline);
    let mut backoff = Backoff::new(options.backoff, u32::MAX, wait_until);
    let mut to_ask = digests.to_vec();
    loop {
        let answers: Vec<(String, Option<BlobState>)> = stream::iter(to_ask)
            .map(|digest| async move {
                let state = ask(engine, repository, &digest).await;
                (digest, state)
            })
            .buffer_unordered(options.concurrency.max(1))
            .collect()
            .await;
        to_ask = Vec::new();
        for (digest, state) in answers {
            let Some(state) = state else { continue };
            if matches!(state, BlobState::Pending(_)) {
                to_ask.push(digest.clone());
            }
            states.insert(digest, state);
        }
        if options.layers != LayerMode::Verify || to_ask.is_empty() || !backoff.wait().await {
            return states;
        }
    }
}

/// One blob's state, or `None` when the deadline came first.
async fn ask(engine: &Engine<'_>, repository: &str, digest: &str) -> Option<BlobState> {
    let called = engine
        .call(download_url_code, || {
            engine
                .ecr
                .get_download_url_for_layer()
                .repository_name(repository)
                .layer_digest(digest)
                .send()
        })
        .await;
    let verify = engine.options.layers == LayerMode::Verify;
    Some(match called {
        Attempted::NotStarted | Attempted::Cut => return None,
        Attempted::Done(Ok(_)) if !verify => BlobState::Cached,
        Attempted::Done(Ok(output)) => judge(output.download_url().unwrap_or_default()),
        Attempted::Done(Err(error)) => {
            let failure = failed_call("GetDownloadUrlForLayer", &error, download_url_code);
            if verify && failure.code == "LayersNotFoundException" {
                BlobState::Pending(
                    "ECR does not hold the blob yet (LayersNotFoundException)".to_string(),
                )
            } else {
                BlobState::Failed(failure)
            }
        }
    })
}

/// A blob is cached when its download URL is on ECR's layer bucket.
pub fn judge(url: &str) -> BlobState {
    let host = host_of(url);
    if is_layer_storage(host) {
        BlobState::Cached
    } else if host.is_empty() {
        BlobState::Pending("ECR gave no download URL for the blob".to_string())
    } else {
        BlobState::Pending(format!(
            "ECR sends clients to {host} for this blob, not to its own layer storage"
        ))
    }
}

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    host.split(':').next().unwrap_or_default()
}

/// `prod-<region>-starport-layer-bucket.s3[.<region>].amazonaws.com`, also
/// in the China partition (`.amazonaws.com.cn`).
fn is_layer_storage(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let Some(endpoint) = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))
    else {
        return false;
    };
    let Some((bucket, s3)) = endpoint.split_once('.') else {
        return false;
    };
    let region = bucket
        .strip_prefix("prod-")
        .and_then(|rest| rest.strip_suffix("-starport-layer-bucket"));
    let s3_endpoint = s3 == "s3" || s3.starts_with("s3.") || s3.starts_with("s3-");
    region.is_some_and(|region| !region.is_empty()) && s3_endpoint
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_on_ecr_layer_storage_are_cached() {
        for url in [
            "https://prod-us-east-1-starport-layer-bucket.s3.us-east-1.amazonaws.com/5a1c-123456789012-9e1d/abc?X-Amz-Signature=1",
            "https://prod-eu-west-1-starport-layer-bucket.s3.amazonaws.com/x",
            "https://prod-cn-north-1-starport-layer-bucket.s3.cn-north-1.amazonaws.com.cn/x",
            "https://PROD-us-west-2-starport-layer-bucket.s3-us-west-2.amazonaws.com:443/x",
        ] {
            assert_eq!(judge(url), BlobState::Cached, "{url}");
        }
    }

    #[test]
    fn urls_anywhere_else_are_pending_and_name_the_host() {
        for (url, host) in [
            (
                "https://registry-1.docker.io/v2/library/nginx/blobs/sha256:1",
                "registry-1.docker.io",
            ),
            (
                "https://d2glxqk2uabbnd.cloudfront.net/x",
                "d2glxqk2uabbnd.cloudfront.net",
            ),
            (
                "https://production.cloudflare.docker.com/registry-v2/x",
                "production.cloudflare.docker.com",
            ),
            (
                "https://prod-us-east-1-starport-layer-bucket.evil.example/x",
                "prod-us-east-1-starport-layer-bucket.evil.example",
            ),
            (
                "https://my-bucket.s3.amazonaws.com/x",
                "my-bucket.s3.amazonaws.com",
            ),
            (
                "https://prod--starport-layer-bucket.s3.amazonaws.com/x",
                "prod--starport-layer-bucket.s3.amazonaws.com",
            ),
        ] {
            let BlobState::Pending(reason) = judge(url) else {
                panic!("{url} is not ECR's storage")
            };
            assert!(reason.contains(host), "{reason}");
        }
        assert!(
            matches!(judge(""), BlobState::Pending(reason) if reason.contains("no download URL"))
        );
    }

    #[test]
    fn layer_modes_read_from_settings() {
        assert_eq!("verify".parse(), Ok(LayerMode::Verify));
        assert_eq!(" none ".parse(), Ok(LayerMode::None));
        assert_eq!("request".parse(), Ok(LayerMode::Request));
        assert!("all".parse::<LayerMode>().is_err());
        assert_eq!(LayerMode::default(), LayerMode::Verify);
    }
}
