//! Whole images through the pull-through cache emulator: every platform of an
//! index, every blob asked for and judged by where ECR sends clients for it.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::{EmulatorDir, MotoServer};

const BIN: &str = env!("CARGO_BIN_EXE_ecr-cache-warmer");
/// The first layer of nginx:1.27's linux/amd64 image in emulator/catalog.json.
const NGINX_AMD64_LAYER: &str =
    "sha256:4646c1cdb961ec11c16e195c3ef7d8b55e0cb9763ed4536ea34afcd82b1269d9";
/// The one layer of registry.k8s.io/pause:3.10.
const PAUSE_LAYER: &str = "sha256:77d2584dcde962d9449e2bde29eb09e1258cd36ad8f1f6f02d6ef07d7b88a264";
/// The first layer of alpine:3.20.
const ALPINE_LAYER: &str =
    "sha256:8b5925d2ce3c7624c0ebbae4b2b9c574cb985903a74583e840728dbe45cafb63";

fn emulator(config: Value) -> (EmulatorDir, MotoServer) {
    let mut config = config;
    config["rules"] = json!([
        {"ecrRepositoryPrefix": "docker-hub", "upstreamRegistryUrl": "registry-1.docker.io"},
        {"ecrRepositoryPrefix": "k8s", "upstreamRegistryUrl": "registry.k8s.io"}
    ]);
    let dir = EmulatorDir::new(config);
    let server = MotoServer::start_emulator(&dir.config);
    (dir, server)
}

fn warm(server: &MotoServer, args: &[&str]) -> (Option<i32>, Value) {
    server.json_output(&[&["warm"], args].concat(), &[])
}

fn platforms(image: &Value) -> Vec<(String, String)> {
    image["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["platform"].as_str().unwrap_or("-").to_string(),
                p["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn every_platform_and_every_blob_of_an_image_is_warmed() {
    let (_dir, server) = emulator(json!({}));
    let (code, document) = warm(&server, &["nginx:1.27", "redis:7.4", "alpine:3.20"]);
    assert_eq!(code, Some(0), "{document}");
    let images = &document["images"];
    let pair = |platform: &str| (platform.to_string(), "imported".to_string());
    // The OCI index: both runnable platforms, not its attestation.
    assert_eq!(
        platforms(&images[0]),
        [pair("linux/amd64"), pair("linux/arm64/v8")]
    );
    // The Docker manifest list.
    assert_eq!(
        platforms(&images[1]),
        [pair("linux/amd64"), pair("linux/arm64/v8")]
    );
    // A single manifest: one entry, platform unknown.
    assert_eq!(platforms(&images[2]), [pair("-")]);
    for image in images.as_array().unwrap() {
        assert_eq!(image["status"], "imported", "{image}");
        for platform in image["platforms"].as_array().unwrap() {
            let layers = &platform["layers"];
            assert!(layers["total"].as_u64().unwrap() >= 2, "{platform}");
            assert_eq!(layers["cached"], layers["total"], "{platform}");
        }
    }
    // redis:7.4's platforms share two layers: each distinct blob counts once.
    let redis: u64 = images[1]["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["layers"]["total"].as_u64().unwrap())
        .sum();
    let (_, alone) = warm(&server, &["redis:7.4"]);
    assert_eq!(
        alone["summary"]["layers"]["total"].as_u64(),
        Some(redis - 2)
    );
    assert_eq!(alone["images"][0]["status"], "unchanged");
    let summary = &document["summary"]["layers"];
    assert_eq!(summary["cached"], summary["total"]);
    assert_eq!(
        (summary["pending"].as_u64(), summary["failed"].as_u64()),
        (Some(0), Some(0))
    );
}

#[test]
fn a_blob_that_arrives_during_the_layer_wait_is_waited_for() {
    let (_dir, server) = emulator(json!({
        "pending_layers": {NGINX_AMD64_LAYER: {"requests": 2}}
    }));
    let (code, document) = warm(&server, &["nginx:1.27"]);
    assert_eq!(code, Some(0), "{document}");
    assert_eq!(document["images"][0]["status"], "imported");
}

#[test]
fn a_blob_still_upstream_leaves_the_image_pending_until_a_later_warm() {
    let (_dir, server) = emulator(json!({
        "pending_layers": {PAUSE_LAYER: {"seconds": 3}}
    }));
    let started = std::time::Instant::now();
    let (code, first) = warm(
        &server,
        &["--layer-wait", "1s", "registry.k8s.io/pause:3.10"],
    );
    assert_eq!(code, Some(1), "pending is not warm: {first}");
    let image = &first["images"][0];
    assert_eq!(image["status"], "pending");
    let message = image["message"].as_str().unwrap();
    assert!(
        message.contains(PAUSE_LAYER) && message.contains("registry.k8s.io"),
        "{message}"
    );
    assert_eq!(
        image["platforms"][0]["layers"],
        json!({"total": 2, "cached": 1, "pending": 1, "failed": 0})
    );
    assert_eq!(first["summary"]["pending"], 1);

    std::thread::sleep(Duration::from_secs(3).saturating_sub(started.elapsed()));
    let (code, second) = warm(&server, &["registry.k8s.io/pause:3.10"]);
    assert_eq!(code, Some(0), "{second}");
    assert_eq!(second["images"][0]["status"], "unchanged");
}

#[test]
fn layer_errors_and_missing_platforms_fail_with_their_codes() {
    let (_dir, server) = emulator(json!({
        "layer_errors": {ALPINE_LAYER: "LayerInaccessibleException"}
    }));
    let (code, document) = warm(
        &server,
        &["--platform", "linux/s390x", "nginx:1.27", "alpine:3.20"],
    );
    assert_eq!(code, Some(1));
    let nginx = &document["images"][0];
    assert_eq!(nginx["failure_code"], "PlatformNotFound");
    assert!(
        nginx["message"]
            .as_str()
            .unwrap()
            .ends_with("it has linux/amd64, linux/arm64/v8"),
        "{nginx}"
    );
    let alpine = &document["images"][1];
    assert_eq!(alpine["failure_code"], "LayerInaccessibleException");
    assert!(alpine["message"].as_str().unwrap().contains(ALPINE_LAYER));
    assert!(alpine["hint"]
        .as_str()
        .unwrap()
        .contains("non-distributable"));
}

#[test]
fn the_text_report_shows_platforms_and_cached_layers() {
    let (_dir, server) = emulator(json!({}));
    let output = Command::new(BIN)
        .args(["warm", "nginx:1.27", "--platform", "linux/arm64"])
        .envs(server.env())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let header = stdout.lines().next().unwrap();
    assert!(
        header.contains("PLATFORMS") && header.contains("LAYERS CACHED"),
        "{stdout}"
    );
    let row = stdout.lines().nth(1).unwrap();
    assert!(
        row.contains("linux/arm64/v8") && !row.contains("linux/amd64"),
        "{stdout}"
    );
    let (cached, total) = row.rsplit(' ').next().unwrap().split_once('/').unwrap();
    assert_eq!(cached, total, "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{total} distinct blobs: {total} cached on ECR's storage"
        )),
        "{stdout}"
    );
}
