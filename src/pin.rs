//! Digest-pinned images (`nginx@sha256:…`, as Helm charts and ECS task
//! definitions write them). A pull-through cache fills only from tag pulls:
//! an uncached digest comes back missing (aws/containers-roadmap #2837). So
//! the tag that holds the digest upstream is found — a HEAD of each of the
//! newest tags, which spends no pull, then the platforms of the indexes among
//! them — and the image is pulled as `tag@digest` in its place.

use std::time::Instant;

use futures_util::stream::{self, StreamExt};

use crate::plan::{PlanFailure, PlannedImage};
use crate::reference::Reference;
use crate::rules::Rules;
use crate::selector;
use crate::upstream::manifest::is_index;
use crate::upstream::resolver::Resolver;

/// Images, and HEADs of one repository's tags, asked at once.
const CONCURRENCY: usize = 8;
/// Indexes whose platforms are read (a GET each: a pull on Docker Hub) when
/// no tag's own digest is the pin.
const INDEXES_READ: usize = 5;

const NOT_TAGGED: PlanFailure = PlanFailure {
    code: "DigestNotTagged",
    hint: "a pull-through cache can only import what a tag points at upstream: pin a tag with \
           its digest (name:tag@sha256:…), or keep the image in a repository of your own",
    retryable: false,
    skipped: false,
};

/// The images with each uncached pinned digest pulled by the tag that holds
/// it upstream, or failed `DigestNotTagged` when none of the newest `search`
/// tags does. Every other image is as it was.
pub async fn by_tags(
    ecr: &aws_sdk_ecr::Client,
    resolver: &Resolver,
    rules: &Rules,
    images: &[PlannedImage],
    search: usize,
    deadline: Option<Instant>,
) -> Vec<PlannedImage> {
    let resolved = stream::iter(images)
        .map(|image| async move {
            match pinned(image) {
                Some(reference) if search > 0 => match cached(ecr, image, reference).await {
                    true => image.clone(),
                    false => with_tag(resolver, rules, image, reference, search, deadline).await,
                },
                _ => image.clone(),
            }
        })
        .buffered(CONCURRENCY)
        .collect();
    // Past the deadline the warm reports each image as it stands.
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline.into(), resolved)
            .await
            .unwrap_or_else(|_| images.to_vec()),
        None => resolved.await,
    }
}

/// The reference of an image pinned by digest alone, ready to pull.
fn pinned(image: &PlannedImage) -> Option<&Reference> {
    let reference = image.reference.as_ref()?;
    (image.is_ready() && reference.tag().is_none() && reference.digest().is_some())
        .then_some(reference)
}

/// Whether the cache holds the digest already (DescribeImages pulls nothing).
/// When ECR cannot say, the image is left to the warm, which reports why.
async fn cached(ecr: &aws_sdk_ecr::Client, image: &PlannedImage, reference: &Reference) -> bool {
    let Some(target) = &image.target else {
        return true;
    };
    let id = aws_sdk_ecr::types::ImageIdentifier::builder()
        .set_image_digest(reference.digest().map(str::to_string))
        .build();
    match ecr
        .describe_images()
        .repository_name(&target.cache_repository)
        .image_ids(id)
        .send()
        .await
    {
        Ok(_) => true,
        Err(error) => {
            let code = aws_sdk_ecr::error::ProvideErrorMetadata::code(&error);
            !matches!(
                code,
                Some("ImageNotFoundException" | "RepositoryNotFoundException")
            )
        }
    }
}

async fn with_tag(
    resolver: &Resolver,
    rules: &Rules,
    image: &PlannedImage,
    reference: &Reference,
    search: usize,
    deadline: Option<Instant>,
) -> PlannedImage {
    let digest = reference.digest().unwrap_or_default();
    match find(resolver, rules, reference, search, deadline).await {
        Ok(Some(tag)) => {
            let pinned = format!("{}:{tag}@{digest}", reference.name());
            match Reference::parse_normalized(&pinned) {
                Ok(tagged) => {
                    tracing::info!(input = %image.input, %tag, "a pinned digest is pulled by the tag that holds it");
                    PlannedImage {
                        reference: Some(tagged),
                        via_tag: Some(tag),
                        ..image.clone()
                    }
                }
                Err(_) => image.clone(),
            }
        }
        Ok(None) => image.unselected(
            NOT_TAGGED,
            format!(
                "none of the {search} newest tags of {} upstream points at {digest}, nor lists \
                 it as a platform, so the cache cannot import it",
                reference.name()
            ),
        ),
        // The upstream could not be asked: the warm tries the digest as it is
        // and reports what ECR says of it.
        Err(error) => {
            tracing::warn!(input = %image.input, %error, "the tag of a pinned digest cannot be found upstream");
            image.clone()
        }
    }
}

/// The newest tag that points at the digest, or whose index lists it.
async fn find(
    resolver: &Resolver,
    rules: &Rules,
    reference: &Reference,
    search: usize,
    deadline: Option<Instant>,
) -> Result<Option<String>, String> {
    let digest = reference.digest().unwrap_or_default();
    let login = resolver
        .login_for(reference, rules, deadline)
        .await
        .map_err(|error| error.to_string())?;
    let login = login.as_deref();
    let tags = resolver
        .tags_of(reference, login, rules, deadline)
        .await
        .map_err(|error| error.to_string())?;
    let newest: Vec<String> = selector::newest_tags(&tags, search)
        .into_iter()
        .map(str::to_string)
        .collect();
    let heads: Vec<(String, Option<String>, bool)> = stream::iter(&newest)
        .map(|tag| async move {
            let head = resolver
                .head_of(reference, tag, login, rules, deadline)
                .await;
            let (digest, index) = match head {
                Ok(head) => (
                    head.digest,
                    head.media_type.as_deref().is_some_and(is_index),
                ),
                Err(_) => (None, false),
            };
            (tag.clone(), digest, index)
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    if let Some((tag, _, _)) = heads
        .iter()
        .find(|(_, head, _)| head.as_deref() == Some(digest))
    {
        return Ok(Some(tag.clone()));
    }
    let indexes = heads
        .iter()
        .filter(|(_, _, index)| *index)
        .take(INDEXES_READ);
    for (tag, _, _) in indexes {
        let platforms = resolver
            .index_of(reference, tag, login, rules, deadline)
            .await
            .unwrap_or_default();
        if platforms.iter().any(|platform| platform == digest) {
            return Ok(Some(tag.clone()));
        }
    }
    Ok(None)
}
