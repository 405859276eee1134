//! A stand-in ECR pull-through cache for the function's tests: every
//! repository is new, and tags answer by their name.

use aws_sdk_ecr::config::retry::RetryConfig;
use aws_sdk_ecr::operation::batch_get_image::BatchGetImageOutput;
use aws_sdk_ecr::operation::describe_images::DescribeImagesError;
use aws_sdk_ecr::operation::get_download_url_for_layer::GetDownloadUrlForLayerOutput;
use aws_sdk_ecr::types::error::RepositoryNotFoundException;
use aws_sdk_ecr::types::{Image, ImageFailure, ImageFailureCode, ImageIdentifier};
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use serde_json::json;

/// Upstream: tags named `missing*` do not exist, `busy*` hit the upstream's
/// rate limit; every other tag is imported.
pub fn fake_ecr() -> aws_sdk_ecr::Client {
    let describe = mock!(aws_sdk_ecr::Client::describe_images).then_error(|| {
        DescribeImagesError::RepositoryNotFoundException(
            RepositoryNotFoundException::builder().build(),
        )
    });
    let batch = mock!(aws_sdk_ecr::Client::batch_get_image).then_compute_output(|req| {
        let mut output = BatchGetImageOutput::builder();
        for id in req.image_ids() {
            let tag = id.image_tag().unwrap_or_default();
            let code = match tag {
                t if t.starts_with("missing") => Some("ImageNotFound"),
                t if t.starts_with("busy") => Some("UpstreamTooManyRequests"),
                _ => None,
            };
            output = match code {
                Some(code) => output.failures(
                    ImageFailure::builder()
                        .image_id(id.clone())
                        .failure_code(ImageFailureCode::from(code))
                        .failure_reason(code)
                        .build(),
                ),
                None => output.images(
                    Image::builder()
                        .image_id(
                            ImageIdentifier::builder()
                                .image_tag(tag)
                                .image_digest(format!("sha256:{:064x}", tag.len()))
                                .build(),
                        )
                        .image_manifest(manifest_of(tag))
                        .image_manifest_media_type("application/vnd.oci.image.manifest.v1+json")
                        .build(),
                ),
            };
        }
        output.build()
    });
    // Blobs of `slow*` tags stay on the upstream's storage.
    let layer = mock!(aws_sdk_ecr::Client::get_download_url_for_layer).then_compute_output(|req| {
        let digest = req.layer_digest().unwrap_or_default();
        let url = match digest.ends_with(&format!("{:058x}", 0x5_1008)) {
            true => "https://production.cloudflare.docker.com/registry-v2/blob",
            false => "https://prod-us-east-1-starport-layer-bucket.s3.us-east-1.amazonaws.com/b",
        };
        GetDownloadUrlForLayerOutput::builder()
            .download_url(url)
            .layer_digest(digest)
            .build()
    });
    // Every repository is new: it lists no image.
    let list = mock!(aws_sdk_ecr::Client::list_images).then_error(|| {
        aws_sdk_ecr::operation::list_images::ListImagesError::RepositoryNotFoundException(
            RepositoryNotFoundException::builder().build(),
        )
    });
    mock_client!(
        aws_sdk_ecr,
        RuleMode::MatchAny,
        [&describe, &batch, &layer, &list],
        |c| c.retry_config(RetryConfig::disabled())
    )
}

/// An image manifest with one layer; the layer of a `slow*` tag is marked
/// so that the layer mock keeps it pending.
fn manifest_of(tag: &str) -> String {
    let mark = if tag.starts_with("slow") { 0x5_1008 } else { 0 };
    json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{:064x}", tag.len()), "size": 1},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": format!("sha256:{:06x}{mark:058x}", tag.len()), "size": 1}]
    })
    .to_string()
}
