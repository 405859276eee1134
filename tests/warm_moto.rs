//! `ecr-cache-warmer warm --layers none` against moto's ECR over HTTP (moto
//! knows no GetDownloadUrlForLayer).

mod support;

use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};
use support::{MotoServer, TempDir};

const BIN: &str = env!("CARGO_BIN_EXE_ecr-cache-warmer");

/// Stores an OCI manifest under `tag`, with the digest ECR would compute
/// (sha256 of the manifest bytes), and returns that digest.
async fn seed(ecr: &aws_sdk_ecr::Client, repository: &str, tag: &str, size: u64) -> String {
    let _ = ecr
        .create_repository()
        .repository_name(repository)
        .send()
        .await;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{:064x}", size),
            "size": 1470
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": format!("sha256:{:064x}", size + 1),
            "size": size
        }]
    })
    .to_string();
    let digest = format!("sha256:{:x}", Sha256::digest(manifest.as_bytes()));
    ecr.put_image()
        .repository_name(repository)
        .image_manifest(&manifest)
        .image_tag(tag)
        .image_digest(&digest)
        .send()
        .await
        .expect("moto stores the image");
    digest
}

#[tokio::test(flavor = "multi_thread")]
async fn warm_reports_cached_missing_and_denied_images() {
    let moto = MotoServer::start();
    let ecr = moto.ecr();
    let nginx = seed(&ecr, "docker-hub/library/nginx", "1.27", 28_000_000).await;
    let redis = seed(&ecr, "docker-hub/library/redis", "7", 41_000_000).await;
    let dir = TempDir::new();
    let emf = dir.path.join("warm.emf");

    let output = Command::new(BIN)
        .args([
            "warm",
            // moto answers no GetDownloadUrlForLayer: manifests only.
            "--layers",
            "none",
            "--rule",
            "docker-hub=registry-1.docker.io",
            "--output",
            "json",
            "--emf",
        ])
        .arg(&emf)
        .args([
            "nginx:1.27",
            "redis:7",
            "nginx:9.9-missing",
            "bitnami/postgresql:16",
            "Not/Valid",
        ])
        .envs(moto.env())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let document: Value = serde_json::from_slice(&output.stdout).expect("one JSON document");
    let images = document["images"].as_array().unwrap();
    assert_eq!(images.len(), 5);

    assert_eq!(images[0]["status"], "unchanged");
    assert_eq!(images[0]["cache_repository"], "docker-hub/library/nginx");
    assert_eq!(images[0]["tag"], "1.27");
    assert_eq!(images[0]["digest"], nginx.as_str());
    assert_eq!(images[1]["status"], "unchanged");
    assert_eq!(images[1]["digest"], redis.as_str());

    assert_eq!(images[2]["status"], "failed");
    assert_eq!(images[2]["failure_code"], "ImageNotFound");
    assert!(images[2]["hint"]
        .as_str()
        .unwrap()
        .contains("docker.io/library/nginx:9.9-missing"));

    assert_eq!(images[3]["status"], "failed");
    assert_eq!(images[3]["failure_code"], "RepositoryNotFoundException");
    let hint = images[3]["hint"].as_str().unwrap();
    assert!(
        hint.contains("registry permissions policy") && hint.contains("ecr:CreateRepository"),
        "{hint}"
    );

    assert_eq!(images[4]["status"], "failed");
    assert_eq!(images[4]["failure_code"], "InvalidReference");

    for image in images {
        for field in [
            "input",
            "cache_repository",
            "tag",
            "digest",
            "status",
            "previous_digest",
            "failure_code",
            "message",
            "hint",
        ] {
            assert!(image.get(field).is_some(), "{field} in {image}");
        }
    }
    let summary = &document["summary"];
    assert_eq!(
        (
            &summary["total"],
            &summary["imported"],
            &summary["refreshed"],
            &summary["unchanged"],
            &summary["failed"],
            &summary["skipped"]
        ),
        (
            &5.into(),
            &0.into(),
            &0.into(),
            &2.into(),
            &3.into(),
            &0.into()
        )
    );
    assert!(summary["duration_ms"].is_u64());

    let emf_text = std::fs::read_to_string(&emf).expect("the EMF file is written");
    let total: Value = serde_json::from_str(emf_text.lines().last().unwrap()).unwrap();
    assert_eq!(
        (
            total["Unchanged"].as_u64(),
            total["Failed"].as_u64(),
            total["Images"].as_u64()
        ),
        (Some(2), Some(3), Some(5))
    );
    assert_eq!(
        total["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "EcrCacheWarmer"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn warm_text_output_shows_each_image_and_the_hints() {
    let moto = MotoServer::start();
    seed(&moto.ecr(), "docker-hub/library/alpine", "3.20", 3_600_000).await;
    let output = Command::new(BIN)
        .args([
            "warm",
            // moto answers no GetDownloadUrlForLayer: manifests only.
            "--layers",
            "none",
            "--rule",
            "docker-hub=registry-1.docker.io",
            "alpine:3.20",
        ])
        .envs(moto.env())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("alpine:3.20") && stdout.contains("unchanged"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "1 image: 0 imported, 0 refreshed, 1 unchanged, 0 pending, 0 failed, 0 skipped"
        ),
        "{stdout}"
    );

    let output = Command::new(BIN)
        .args([
            "warm",
            // moto answers no GetDownloadUrlForLayer: manifests only.
            "--layers",
            "none",
            "--rule",
            "docker-hub=registry-1.docker.io",
            "alpine:0-missing",
        ])
        .envs(moto.env())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("alpine:0-missing failed: ImageNotFound"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  hint: docker.io/library/alpine:0-missing was not found upstream"),
        "{stdout}"
    );
}
