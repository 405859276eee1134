//! The flow of one cache repository: what is cached already, the pull of
//! every tag and digest asked, then of each wanted platform's manifest, then
//! the blobs of every image manifest.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_ecr::operation::batch_get_image::BatchGetImageOutput;
use aws_sdk_ecr::operation::describe_images::DescribeImagesError;
use aws_sdk_ecr::types::{ImageDetail, ImageFailure, ImageIdentifier};

use super::call::{batch_get_image_code, describe_images_code, failed_call, Attempted, Engine};
use super::layers::{self, BlobState, LayerMode};
use super::manifest::{self, Manifest};
use crate::backoff::Backoff;
use crate::outcome::Failure;
use crate::plan::PlannedImage;

/// ECR takes at most 100 image ids per BatchGetImage and DescribeImages call.
pub const IDS_PER_CALL: usize = 100;
const DEFAULT_TAG: &str = "latest";

/// Manifest types the warmer accepts: Docker v2 and OCI, single images and
/// multi-arch indexes, so that a multi-arch tag is cached whole.
pub const ACCEPTED_MEDIA_TYPES: [&str; 4] = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
];

/// One distinct image id of a repository and the inputs that asked for it.
#[derive(Debug, Clone)]
pub struct Request {
    pub tag: Option<String>,
    pub digest: Option<String>,
    pub inputs: Vec<usize>,
    pub upstream_reference: String,
    pub docker_hub: bool,
}

/// The requests of one cache repository.
#[derive(Debug)]
pub struct Repository {
    pub name: String,
    pub rule_prefix: String,
    pub requests: Vec<Request>,
}

/// What became of one pulled id.
#[derive(Debug, Clone)]
pub enum Answer {
    Pulled {
        digest: Option<String>,
        manifest: Option<String>,
        media_type: Option<String>,
    },
    Failed(Failure),
    /// The deadline came first, and why that matters here.
    Skipped(String),
}

/// A request's result: its own pull, the digest cached before, and its platforms.
#[derive(Debug)]
pub struct Resolved {
    pub answer: Answer,
    pub previous_digest: Option<String>,
    pub platforms: Vec<PlatformPull>,
}

/// One image manifest of a request: the platform of an index, or the single manifest.
#[derive(Debug, Clone)]
pub struct PlatformPull {
    pub platform: Option<String>,
    pub digest: Option<String>,
    pub state: PlatformState,
}

#[derive(Debug, Clone)]
pub enum PlatformState {
    /// The manifest is cached; these are its blobs.
    Blobs(Vec<String>),
    /// The manifest is cached; its blobs are not looked at (`--layers none`).
    Manifest,
    Failed(Failure),
    Skipped(String),
}

/// A repository's results: one per request, and the state of each distinct blob.
pub struct Warmed {
    pub resolved: Vec<Resolved>,
    pub blobs: HashMap<String, BlobState>,
}

pub fn group_by_repository(planned: &[PlannedImage]) -> Vec<Repository> {
    let mut repositories: BTreeMap<&str, Repository> = BTreeMap::new();
    let mut positions: HashMap<(&str, Option<String>, Option<String>), usize> = HashMap::new();
    for (index, image) in planned.iter().enumerate() {
        let (Some(target), Some(reference)) = (&image.target, &image.reference) else {
            continue;
        };
        let repository = repositories
            .entry(&target.cache_repository)
            .or_insert_with(|| Repository {
                name: target.cache_repository.clone(),
                rule_prefix: target.rule_prefix.clone(),
                requests: Vec::new(),
            });
        let digest = reference.digest().map(str::to_string);
        // Docker pulls `latest` when neither tag nor digest is written.
        let tag = match (reference.tag(), &digest) {
            (Some(tag), _) => Some(tag.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        let key = (
            target.cache_repository.as_str(),
            tag.clone(),
            digest.clone(),
        );
        if let Some(&position) = positions.get(&key) {
            repository.requests[position].inputs.push(index);
            continue;
        }
        let upstream_reference = match (reference.tag(), reference.digest()) {
            (None, None) => format!("{reference}:{DEFAULT_TAG}"),
            _ => reference.to_string(),
        };
        positions.insert(key, repository.requests.len());
        repository.requests.push(Request {
            tag,
            digest,
            inputs: vec![index],
            upstream_reference,
            docker_hub: reference.is_docker_hub(),
        });
    }
    repositories.into_values().collect()
}

pub async fn warm_repository(engine: &Engine<'_>, repository: &Repository) -> Warmed {
    let requests = &repository.requests;
    let previous = match cached_digests(engine, repository).await {
        Ok(previous) => previous,
        Err(answer) => {
            let resolved = requests
                .iter()
                .map(|_| Resolved {
                    answer: answer.clone(),
                    previous_digest: None,
                    platforms: Vec::new(),
                })
                .collect();
            return Warmed {
                resolved,
                blobs: HashMap::new(),
            };
        }
    };
    let ids: Vec<ImageIdentifier> = requests
        .iter()
        .zip(&previous)
        .map(|(request, previous)| pull_id(request, previous.as_deref()))
        .collect();
    // Pins of one tag to different digests are one pull of that tag.
    let mut distinct: Vec<ImageIdentifier> = Vec::new();
    for id in &ids {
        if !distinct.contains(id) {
            distinct.push(id.clone());
        }
    }
    let pulled = pull(engine, &repository.name, &distinct).await;
    let answers: Vec<Answer> = ids
        .iter()
        .zip(requests)
        .map(|(id, request)| {
            let position = distinct.iter().position(|d| d == id);
            let answer = pulled[position.expect("every id is among the distinct ids")].clone();
            match (&request.tag, &request.digest, id.image_digest()) {
                (Some(tag), Some(pinned), None) => check_pin(answer, tag, pinned),
                _ => answer,
            }
        })
        .collect();

    let mut platforms: Vec<Vec<PlatformPull>> = answers
        .iter()
        .zip(requests)
        .map(|(answer, request)| platforms_of(engine, answer, request))
        .collect();
    pull_platform_manifests(engine, &repository.name, &answers, &mut platforms).await;

    let mut digests: Vec<String> = Vec::new();
    for pull in platforms.iter().flatten() {
        if let PlatformState::Blobs(blobs) = &pull.state {
            for blob in blobs {
                if !digests.contains(blob) {
                    digests.push(blob.clone());
                }
            }
        }
    }
    let blobs = match engine.options.layers {
        LayerMode::None => HashMap::new(),
        _ => layers::check(engine, &repository.name, &digests).await,
    };
    let resolved = answers
        .into_iter()
        .zip(previous)
        .zip(platforms)
        .map(|((answer, previous_digest), platforms)| Resolved {
            answer,
            previous_digest,
            platforms,
        })
        .collect();
    Warmed { resolved, blobs }
}

/// What to ask BatchGetImage for a request. A tag pinned to a digest that the
/// cache does not hold under that tag is asked by tag alone: a pull-through
/// cache fills only from tag pulls, and reports an id with a tag and the
/// digest of an uncached image as missing, as users report of ECR
/// (aws/containers-roadmap #2837). The pin is compared after the pull
/// ([`check_pin`]).
fn pull_id(request: &Request, previous: Option<&str>) -> ImageIdentifier {
    match (&request.tag, &request.digest) {
        (Some(tag), Some(pinned)) if previous != Some(pinned.as_str()) => {
            ImageIdentifier::builder().image_tag(tag).build()
        }
        _ => request_id(request),
    }
}

/// A pull by tag of a pinned `tag@digest` warms the pin when the tag points at
/// that digest: its index's or one of the index's platform manifests'.
/// Otherwise the tag has moved on, and the cache cannot import the pin.
fn check_pin(answer: Answer, tag: &str, pinned: &str) -> Answer {
    let Answer::Pulled {
        digest,
        manifest,
        media_type,
    } = &answer
    else {
        return answer;
    };
    if digest.as_deref() == Some(pinned) || platform_entry(manifest, media_type, pinned).is_some() {
        return answer;
    }
    Answer::Failed(Failure::new(
        "ImageTagDoesNotMatchDigest",
        &format!(
            "tag {tag} points at {} now, not at the pinned {pinned}",
            digest.as_deref().unwrap_or("another digest")
        ),
    ))
}

/// The entry of an index whose manifest has this digest, if the manifest is an index.
fn platform_entry(
    manifest: &Option<String>,
    media_type: &Option<String>,
    digest: &str,
) -> Option<manifest::IndexEntry> {
    match manifest::parse(manifest.as_deref()?, media_type.as_deref()) {
        Ok(Manifest::Index(entries)) => entries.into_iter().find(|entry| entry.digest == digest),
        _ => None,
    }
}

/// The image manifests a pulled request stands for: the wanted platforms of
/// an index (their manifests still to pull), or its own manifest.
fn platforms_of(engine: &Engine<'_>, answer: &Answer, request: &Request) -> Vec<PlatformPull> {
    let Answer::Pulled {
        digest,
        manifest,
        media_type,
    } = answer
    else {
        return Vec::new();
    };
    // A pin of one platform's manifest wants that platform alone.
    if let Some(pinned) = request
        .digest
        .as_deref()
        .filter(|p| digest.as_deref() != Some(*p))
    {
        if let Some(entry) = platform_entry(manifest, media_type, pinned) {
            return vec![PlatformPull {
                platform: entry.platform.map(|p| p.to_string()),
                digest: Some(entry.digest),
                state: PlatformState::Skipped(
                    "the deadline came before this platform's manifest was pulled".to_string(),
                ),
            }];
        }
    }
    let digest = digest.clone().or(request.digest.clone());
    let layers_wanted = engine.options.layers != LayerMode::None;
    let parsed = manifest
        .as_deref()
        .ok_or_else(|| "ECR returned no manifest".to_string())
        .and_then(|body| manifest::parse(body, media_type.as_deref()));
    match parsed {
        Ok(Manifest::Index(entries)) if manifest::select(&entries, &[]).is_empty() => {
            vec![PlatformPull {
                platform: None,
                digest: None,
                state: PlatformState::Failed(Failure::new(
                    "PlatformNotFound",
                    "the image index lists no runnable platform, only attestations or unknown/unknown",
                )),
            }]
        }
        Ok(Manifest::Index(entries)) => manifest::select(&entries, &engine.options.platforms)
            .into_iter()
            .map(|chosen| match chosen {
                Ok(entry) => PlatformPull {
                    platform: entry.platform.map(|p| p.to_string()),
                    digest: Some(entry.digest),
                    state: PlatformState::Skipped(
                        "the deadline came before this platform's manifest was pulled".to_string(),
                    ),
                },
                Err((platform, message)) => PlatformPull {
                    platform: Some(platform.to_string()),
                    digest: None,
                    state: PlatformState::Failed(Failure::new("PlatformNotFound", &message)),
                },
            })
            .collect(),
        Ok(Manifest::Image(blobs)) => vec![PlatformPull {
            platform: None,
            digest,
            state: match layers_wanted {
                true => PlatformState::Blobs(blobs.digests()),
                false => PlatformState::Manifest,
            },
        }],
        Err(_) if !layers_wanted => vec![PlatformPull {
            platform: None,
            digest,
            state: PlatformState::Manifest,
        }],
        Err(reason) => vec![PlatformPull {
            platform: None,
            digest,
            state: PlatformState::Failed(unreadable(media_type.as_deref(), &reason)),
        }],
    }
}

fn unreadable(media_type: Option<&str>, reason: &str) -> Failure {
    Failure::new(
        "UnreadableManifest",
        &format!(
            "cannot read the manifest ({}): {reason}; its layers cannot be checked",
            media_type.unwrap_or("no media type")
        ),
    )
}

/// Pulls the manifest of every selected platform by digest, each distinct
/// digest once, and fills in what each platform holds.
async fn pull_platform_manifests(
    engine: &Engine<'_>,
    repository: &str,
    answers: &[Answer],
    platforms: &mut [Vec<PlatformPull>],
) {
    let mut wanted: Vec<String> = Vec::new();
    for pull in platforms.iter().flatten() {
        if let (PlatformState::Skipped(_), Some(digest)) = (&pull.state, &pull.digest) {
            if !wanted.contains(digest) {
                wanted.push(digest.clone());
            }
        }
    }
    if wanted.is_empty() {
        return;
    }
    // A platform manifest asked for by digest in the list is pulled already.
    let mut pulled: HashMap<String, Answer> = HashMap::new();
    for answer in answers {
        if let Answer::Pulled {
            digest: Some(digest),
            ..
        } = answer
        {
            pulled.insert(digest.clone(), answer.clone());
        }
    }
    wanted.retain(|digest| !pulled.contains_key(digest));
    let ids: Vec<ImageIdentifier> = wanted
        .iter()
        .map(|digest| ImageIdentifier::builder().image_digest(digest).build())
        .collect();
    let answers = pull(engine, repository, &ids).await;
    pulled.extend(wanted.into_iter().zip(answers));

    let layers_wanted = engine.options.layers != LayerMode::None;
    for pull in platforms.iter_mut().flatten() {
        let Some(answer) = pull.digest.as_ref().and_then(|d| pulled.get(d)) else {
            continue;
        };
        if !matches!(pull.state, PlatformState::Skipped(_)) {
            continue;
        }
        pull.state = match answer {
            Answer::Pulled { .. } if !layers_wanted => PlatformState::Manifest,
            Answer::Pulled {
                manifest,
                media_type,
                ..
            } => match manifest
                .as_deref()
                .ok_or_else(|| "ECR returned no manifest".to_string())
                .and_then(|body| manifest::parse(body, media_type.as_deref()))
            {
                Ok(Manifest::Image(blobs)) => PlatformState::Blobs(blobs.digests()),
                Ok(Manifest::Index(_)) => PlatformState::Failed(unreadable(
                    media_type.as_deref(),
                    "an index inside an index is not supported",
                )),
                Err(reason) => PlatformState::Failed(unreadable(media_type.as_deref(), &reason)),
            },
            Answer::Failed(failure) => PlatformState::Failed(failure.clone()),
            Answer::Skipped(message) => PlatformState::Skipped(message.clone()),
        };
    }
}

/// The digest cached now for each request, `None` when not cached.
/// DescribeImages fails whole when one of the ids is missing; then the
/// repository's images are listed once instead, to tell which ones are there.
async fn cached_digests(
    engine: &Engine<'_>,
    repository: &Repository,
) -> Result<Vec<Option<String>>, Answer> {
    let requests = &repository.requests;
    let mut digests = Vec::with_capacity(requests.len());
    for chunk in requests.chunks(IDS_PER_CALL) {
        let ids: Vec<ImageIdentifier> = chunk.iter().map(request_id).collect();
        let described = engine
            .call(describe_images_code, || {
                engine
                    .ecr
                    .describe_images()
                    .repository_name(&repository.name)
                    .set_image_ids(Some(ids.clone()))
                    .send()
            })
            .await;
        let details = match described {
            Attempted::Done(Ok(output)) => output.image_details().to_vec(),
            Attempted::Done(Err(error)) => match error.as_service_error() {
                Some(DescribeImagesError::RepositoryNotFoundException(_)) => {
                    return Ok(vec![None; requests.len()])
                }
                Some(DescribeImagesError::ImageNotFoundException(_)) if chunk.len() == 1 => {
                    Vec::new()
                }
                Some(DescribeImagesError::ImageNotFoundException(_)) => {
                    let details = list_images(engine, repository).await?;
                    return Ok(requests
                        .iter()
                        .map(|r| cached_digest(&details, r))
                        .collect());
                }
                _ => {
                    return Err(Answer::Failed(failed_call(
                        "DescribeImages",
                        &error,
                        describe_images_code,
                    )))
                }
            },
            // Describing imports nothing: cut or not, the image was not attempted.
            Attempted::NotStarted | Attempted::Cut => return Err(Answer::Skipped(out_of_time())),
        };
        digests.extend(chunk.iter().map(|request| cached_digest(&details, request)));
    }
    Ok(digests)
}

/// Every image of the repository, page by page.
async fn list_images(
    engine: &Engine<'_>,
    repository: &Repository,
) -> Result<Vec<ImageDetail>, Answer> {
    let mut details = Vec::new();
    let mut next_token = None;
    loop {
        let listed = engine
            .call(describe_images_code, || {
                engine
                    .ecr
                    .describe_images()
                    .repository_name(&repository.name)
                    .set_next_token(next_token.clone())
                    .send()
            })
            .await;
        match listed {
            Attempted::Done(Ok(output)) => {
                details.extend_from_slice(output.image_details());
                next_token = output.next_token().map(str::to_string);
                if next_token.is_none() {
                    return Ok(details);
                }
            }
            Attempted::Done(Err(error)) => {
                return Err(Answer::Failed(failed_call(
                    "DescribeImages",
                    &error,
                    describe_images_code,
                )))
            }
            Attempted::NotStarted | Attempted::Cut => return Err(Answer::Skipped(out_of_time())),
        }
    }
}

fn cached_digest(details: &[ImageDetail], request: &Request) -> Option<String> {
    details
        .iter()
        .find(|detail| match &request.tag {
            Some(tag) => detail.image_tags().contains(tag),
            None => detail.image_digest() == request.digest.as_deref(),
        })
        .and_then(|detail| detail.image_digest().map(str::to_string))
}

/// Pulls ids in calls of at most 100; ids that fail for a retryable reason
/// are asked again, up to the attempt limit.
pub async fn pull(engine: &Engine<'_>, repository: &str, ids: &[ImageIdentifier]) -> Vec<Answer> {
    let mut answers = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IDS_PER_CALL) {
        answers.extend(pull_chunk(engine, repository, chunk).await);
    }
    answers
}

/// One budget of attempts for each id, whether the whole call failed or
/// only some of its ids did: an id is sent at most `max_attempts` times.
async fn pull_chunk(engine: &Engine<'_>, repository: &str, ids: &[ImageIdentifier]) -> Vec<Answer> {
    let options = engine.options;
    let mut results: Vec<Option<Answer>> = vec![None; ids.len()];
    let mut backoff = Backoff::new(options.backoff, options.max_attempts, options.deadline);
    loop {
        let pending: Vec<usize> = (0..ids.len())
            .filter(|&i| match &results[i] {
                None => true,
                Some(Answer::Failed(failure)) => failure.retryable(),
                _ => false,
            })
            .collect();
        if pending.is_empty() {
            break;
        }
        if results.iter().any(Option::is_some) && !backoff.wait().await {
            break;
        }
        let asked: Vec<ImageIdentifier> = pending.iter().map(|&i| ids[i].clone()).collect();
        let mut call = engine
            .ecr
            .batch_get_image()
            .repository_name(repository)
            .set_image_ids(Some(asked.clone()));
        for media_type in ACCEPTED_MEDIA_TYPES {
            call = call.accepted_media_types(media_type);
        }
        match engine.once(|| call.send()).await {
            Attempted::Done(Ok(output)) => {
                for (i, answer) in pending.iter().zip(match_output(&output, &asked)) {
                    results[*i] = Some(answer);
                }
            }
            Attempted::Done(Err(error)) => {
                let failure = failed_call("BatchGetImage", &error, batch_get_image_code);
                for &i in &pending {
                    results[i] = Some(Answer::Failed(failure.clone()));
                }
            }
            unanswered => {
                for &i in &pending {
                    results[i] = Some(Answer::Skipped(unanswered.unanswered()));
                }
                break;
            }
        }
    }
    results
        .into_iter()
        .map(|result| result.unwrap_or_else(|| Answer::Skipped(out_of_time())))
        .collect()
}

/// Pairs BatchGetImage's images and failures with the ids asked.
/// Failures whose id matches no request (some implementations leave the
/// digest out) go to the ids still unanswered, in order.
fn match_output(output: &BatchGetImageOutput, asked: &[ImageIdentifier]) -> Vec<Answer> {
    let mut answers: Vec<Option<Answer>> = asked
        .iter()
        .map(|wanted| {
            output
                .images()
                .iter()
                .find(|image| image.image_id().is_some_and(|id| answers_id(id, wanted)))
                .map(|image| Answer::Pulled {
                    digest: image
                        .image_id()
                        .and_then(|id| id.image_digest())
                        .or(wanted.image_digest())
                        .map(str::to_string),
                    manifest: image.image_manifest().map(str::to_string),
                    media_type: image.image_manifest_media_type().map(str::to_string),
                })
        })
        .collect();
    let mut unmatched: Vec<&ImageFailure> = Vec::new();
    for failure in output.failures() {
        let target = asked.iter().enumerate().position(|(i, wanted)| {
            answers[i].is_none() && failure.image_id().is_some_and(|id| answers_id(id, wanted))
        });
        match target {
            Some(i) => answers[i] = Some(image_failure(failure)),
            None => unmatched.push(failure),
        }
    }
    let mut unmatched = unmatched.into_iter();
    answers
        .into_iter()
        .map(|answer| {
            answer
                .or_else(|| unmatched.next().map(image_failure))
                .unwrap_or_else(|| {
                    Answer::Failed(Failure::new(
                        "NotReturned",
                        "BatchGetImage returned neither the image nor a failure for it",
                    ))
                })
        })
        .collect()
}

/// Whether an id in ECR's answer is the id asked: the same tag, and the same
/// digest when both name one.
fn answers_id(id: &ImageIdentifier, wanted: &ImageIdentifier) -> bool {
    let same_digest = match (id.image_digest(), wanted.image_digest()) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    };
    match wanted.image_tag() {
        Some(tag) => id.image_tag() == Some(tag) && same_digest,
        None => wanted.image_digest().is_some() && id.image_digest() == wanted.image_digest(),
    }
}

fn image_failure(failure: &ImageFailure) -> Answer {
    let code = failure
        .failure_code()
        .map_or("Unknown", |code| code.as_str())
        .to_string();
    let message = failure.failure_reason().unwrap_or_default();
    Answer::Failed(Failure::new(&code, message))
}

fn request_id(request: &Request) -> ImageIdentifier {
    ImageIdentifier::builder()
        .set_image_tag(request.tag.clone())
        .set_image_digest(request.digest.clone())
        .build()
}

pub fn out_of_time() -> String {
    "not attempted: the deadline was reached first".to_string()
}

#[cfg(test)]
mod tests;
