//! `warm` through the pull-through cache emulator: first pulls import, the
//! next ones find the images unchanged, a tag moved upstream is refreshed.

mod support;

use std::path::Path;

use serde_json::{json, Value};
use support::{EmulatorDir, MotoServer};

fn warm(server: &MotoServer, images: &[&str]) -> (Option<i32>, Value) {
    server.json_output(&[&["warm"], images].concat(), &[("AWS_MAX_ATTEMPTS", "3")])
}

fn statuses(document: &Value) -> Vec<&str> {
    document["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|image| image["status"].as_str().unwrap())
        .collect()
}

fn move_tag_upstream(catalog: &Path) {
    let mut data: Value = serde_json::from_str(&std::fs::read_to_string(catalog).unwrap()).unwrap();
    let size =
        &mut data["registry-1.docker.io"]["library/nginx"]["tags"]["1.26"]["layers"][0]["size"];
    *size = json!(size.as_u64().unwrap() + 1);
    std::fs::write(catalog, data.to_string()).unwrap();
}

#[test]
fn imports_then_finds_unchanged_then_refreshes_a_moved_tag() {
    let dir = EmulatorDir::new(json!({
        "rules": [
            {"ecrRepositoryPrefix": "docker-hub", "upstreamRegistryUrl": "registry-1.docker.io"},
            {"ecrRepositoryPrefix": "quay", "upstreamRegistryUrl": "quay.io"}
        ],
        "denied_namespaces": ["docker-hub/bitnami"],
        // ECR checks a cached tag upstream again only after 24 hours, the emulator's default:
        // here on every pull, so that the moved tag is refreshed at once.
        "recheck_interval_seconds": 0
    }));
    let emulator = MotoServer::start_emulator(&dir.config);
    let images = [
        "nginx:1.27",
        "nginx:1.26",
        "quay.io/prometheus/node-exporter:v1.8.2",
        "bitnami/redis:7",
        "nginx:0.0-missing",
    ];

    // Rules are read from the emulator: no --rule.
    let (code, first) = warm(&emulator, &images);
    assert_eq!(code, Some(1));
    assert_eq!(
        statuses(&first),
        ["imported", "imported", "imported", "failed", "failed"]
    );
    assert_eq!(
        first["images"][3]["failure_code"],
        "RepositoryNotFoundException"
    );
    assert!(first["images"][3]["hint"]
        .as_str()
        .unwrap()
        .contains("ecr:CreateRepository"));
    assert_eq!(first["images"][4]["failure_code"], "ImageNotFound");
    assert_eq!(
        first["images"][2]["cache_repository"],
        "quay/prometheus/node-exporter"
    );

    let (code, second) = warm(&emulator, &images[..3]);
    assert_eq!(code, Some(0), "{second}");
    assert_eq!(statuses(&second), ["unchanged", "unchanged", "unchanged"]);
    assert_eq!(second["images"][0]["digest"], first["images"][0]["digest"]);

    move_tag_upstream(&dir.path.join("catalog.json"));
    let (_, third) = warm(&emulator, &images[..2]);
    assert_eq!(statuses(&third), ["unchanged", "refreshed"]);
    assert_eq!(
        third["images"][1]["previous_digest"],
        first["images"][1]["digest"]
    );
    assert_ne!(third["images"][1]["digest"], first["images"][1]["digest"]);
}

#[test]
fn throttling_and_upstream_outages_are_ridden_out() {
    let dir = EmulatorDir::new(json!({
        "rules": [{"ecrRepositoryPrefix": "docker-hub", "upstreamRegistryUrl": "registry-1.docker.io"}],
        "faults": {"throttle_share": 0.2, "upstream_unavailable_share": 0.2, "seed": 7}
    }));
    let emulator = MotoServer::start_emulator(&dir.config);
    let (code, document) = warm(
        &emulator,
        &["nginx:1.27", "nginx:1.26", "redis:7", "alpine:3.20"],
    );
    assert_eq!(code, Some(0), "{document}");
    assert_eq!(statuses(&document), ["imported"; 4]);
}

#[tokio::test]
async fn a_pinned_tag_on_an_empty_cache_is_warm_when_the_tag_points_at_the_pin() {
    let dir = EmulatorDir::new(json!({
        "rules": [{"ecrRepositoryPrefix": "docker-hub", "upstreamRegistryUrl": "registry-1.docker.io"}],
        "recheck_interval_seconds": 0
    }));
    let emulator = MotoServer::start_emulator(&dir.config);
    let hub = "registry-1.docker.io";
    let (index, manifest) = emulator
        .upstream_manifest(hub, "library/nginx", "1.27")
        .await;
    let (old, _) = emulator
        .upstream_manifest(hub, "library/nginx", "1.26")
        .await;
    let arm64 = manifest["manifests"][1]["digest"].as_str().unwrap();
    assert_eq!(
        manifest["manifests"][1]["platform"]["architecture"],
        "arm64"
    );
    move_tag_upstream(&dir.path.join("catalog.json"));
    let (new, _) = emulator
        .upstream_manifest(hub, "library/nginx", "1.26")
        .await;
    assert_ne!(old, new);

    let pinned = format!("nginx:1.27@{index}");
    let platform = format!("nginx:1.27@{arm64}");
    let moved = format!("nginx:1.26@{old}");
    let digest_only = format!("nginx@{old}");
    let (code, document) = warm(&emulator, &[&pinned, &platform, &moved, &digest_only]);
    assert_eq!(code, Some(1));
    assert_eq!(
        statuses(&document),
        ["imported", "imported", "failed", "failed"],
        "{document}"
    );
    let images = &document["images"];
    assert_eq!(images[0]["digest"], index.as_str());
    assert_eq!(images[0]["platforms"].as_array().unwrap().len(), 2);
    // A pin of arm64's manifest warms arm64 alone, with its layers.
    let platforms = images[1]["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 1, "{}", images[1]);
    assert_eq!(platforms[0]["digest"], arm64);
    assert_eq!(platforms[0]["status"], "imported");
    assert!(platforms[0]["layers"]["cached"].as_u64().unwrap() > 0);

    assert_eq!(images[2]["failure_code"], "ImageTagDoesNotMatchDigest");
    assert_eq!(
        images[2]["message"],
        format!("tag 1.26 points at {new} now, not at the pinned {old}")
    );
    let hint = images[2]["hint"].as_str().unwrap();
    assert!(
        hint.contains("can only import what a tag points at now"),
        "{hint}"
    );
    // A digest alone is still not imported: the cache fills only from tag pulls.
    assert_eq!(images[3]["failure_code"], "ImageNotFound");
    assert!(images[3]["hint"]
        .as_str()
        .unwrap()
        .contains("cannot fill the cache from a pull by digest"));

    // Warmed again: the pins the cache holds are unchanged.
    let (_, again) = warm(&emulator, &[&pinned, &platform]);
    assert_eq!(statuses(&again), ["unchanged", "unchanged"], "{again}");
}

#[test]
fn a_spent_docker_hub_pull_limit_fails_the_import_with_its_hint() {
    // One pull left: nginx:1.26 (one manifest) takes it, nginx:1.27 (an index of
    // three manifests) finds none left.
    let dir = EmulatorDir::new(json!({
        "rules": [{"ecrRepositoryPrefix": "docker-hub", "upstreamRegistryUrl": "registry-1.docker.io"}],
        "upstream_pull_limits": {"registry-1.docker.io": {"limit": 100, "remaining": 1}}
    }));
    let emulator = MotoServer::start_emulator(&dir.config);
    let (code, document) = warm(&emulator, &["nginx:1.26", "nginx:1.27"]);
    assert_eq!(code, Some(1));
    assert_eq!(statuses(&document), ["imported", "failed"], "{document}");
    let image = &document["images"][1];
    assert_eq!(image["failure_code"], "UpstreamTooManyRequests");
    assert!(image["hint"]
        .as_str()
        .unwrap()
        .contains("100 manifest pulls per 6 hours"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_digest_alone_on_an_empty_cache_ends_warm_via_the_tag_that_holds_it() {
    let dir = EmulatorDir::new(json!({
        "rules": [{"ecrRepositoryPrefix": "docker-hub", "upstreamRegistryUrl": "registry-1.docker.io"}]
    }));
    let emulator = MotoServer::start_emulator(&dir.config);
    let hub = "registry-1.docker.io";
    let (single, _) = emulator
        .upstream_manifest(hub, "library/nginx", "1.26")
        .await;
    let (_, index) = emulator
        .upstream_manifest(hub, "library/nginx", "1.27")
        .await;
    let arm64 = index["manifests"][1]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let nowhere = format!("sha256:{}", "0".repeat(64));
    let endpoint = format!("--upstream-endpoint={}", emulator.upstream_endpoint(hub));
    let images = [
        format!("nginx@{single}"),
        format!("nginx@{arm64}"),
        format!("nginx@{nowhere}"),
    ];
    let mut args = vec!["warm", endpoint.as_str()];
    args.extend(images.iter().map(String::as_str));
    let (code, document) = emulator.json_output(&args, &[("AWS_MAX_ATTEMPTS", "3")]);
    assert_eq!(code, Some(1), "{document}");
    assert_eq!(
        statuses(&document),
        ["imported", "imported", "failed"],
        "{document}"
    );
    let found = &document["images"];
    let tag = found[0]["via_tag"]
        .as_str()
        .expect("the tag it was pulled by");
    let (digest, _) = emulator.upstream_manifest(hub, "library/nginx", tag).await;
    assert_eq!(digest, single, "{tag} holds the pinned digest");
    assert_eq!(found[0]["input"], images[0].as_str());
    // A platform's manifest is found in the index of a tag that lists it.
    assert!(found[1]["via_tag"].is_string(), "{}", found[1]);
    assert_eq!(found[1]["platforms"][0]["digest"], arm64.as_str());
    assert_eq!(found[2]["failure_code"], "DigestNotTagged");
    assert!(found[2]["hint"]
        .as_str()
        .unwrap()
        .contains("can only import what a tag points at"));

    // The digests are in the cache now: a warm of them finds them as they are.
    let (_, again) = emulator.json_output(&args[..4], &[("AWS_MAX_ATTEMPTS", "3")]);
    assert_eq!(statuses(&again), ["unchanged", "unchanged"], "{again}");
    assert!(again["images"][0]["via_tag"].is_null());

    // On an empty cache, the table says which tag an image was pulled by.
    let emulator = MotoServer::start_emulator(&dir.config);
    let endpoint = format!("--upstream-endpoint={}", emulator.upstream_endpoint(hub));
    let text = std::process::Command::new(env!("CARGO_BIN_EXE_ecr-cache-warmer"))
        .args(["warm", endpoint.as_str(), images[0].as_str()])
        .envs(emulator.env())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!("{} (via tag {tag})", images[0])),
        "{text}"
    );
}

#[test]
fn imports_wait_for_the_upstreams_pull_budget_rather_than_fail() {
    // Two pulls left; five images of one manifest each to import.
    let dir = EmulatorDir::new(json!({
        "rules": [{"ecrRepositoryPrefix": "docker-hub", "upstreamRegistryUrl": "registry-1.docker.io"}],
        "upstream_pull_limits": {"registry-1.docker.io": {"limit": 100, "remaining": 2}}
    }));
    let emulator = MotoServer::start_emulator(&dir.config);
    let hub = "registry-1.docker.io";
    let endpoint = format!("--upstream-endpoint={}", emulator.upstream_endpoint(hub));
    let images = [
        "nginx:1.26",
        "nginx:1.26.0",
        "nginx:1.26.1",
        "nginx:1.26.2",
        "nginx:1.25.5",
    ];
    let mut args = vec!["warm", endpoint.as_str(), "--pull-reserve", "0"];
    args.extend(images);
    let (code, document) = emulator.json_output(&args, &[("AWS_MAX_ATTEMPTS", "3")]);
    assert_eq!(code, Some(1));
    assert_eq!(
        statuses(&document),
        ["imported", "imported", "skipped", "skipped", "skipped"],
        "{document}"
    );
    for image in &document["images"].as_array().unwrap()[2..] {
        assert_eq!(image["failure_code"], "UpstreamPullBudget", "{image}");
        let message = image["message"].as_str().unwrap();
        assert!(message.starts_with("2 of 100 pulls left"), "{message}");
        assert!(image["hint"].as_str().unwrap().contains("rolling window"));
    }
    assert_eq!(
        document["pulls_left"],
        json!([{"upstream": "docker-hub", "limit": 100, "remaining": 2, "window_s": 21600}])
    );

    // By default a tenth of the limit stays for the credential's other users:
    // with 10 of 100 left, nothing is imported, and nothing fails.
    let dir = EmulatorDir::new(json!({
        "rules": [{"ecrRepositoryPrefix": "docker-hub", "upstreamRegistryUrl": "registry-1.docker.io"}],
        "upstream_pull_limits": {"registry-1.docker.io": {"limit": 100, "remaining": 10}}
    }));
    let emulator = MotoServer::start_emulator(&dir.config);
    let endpoint = format!("--upstream-endpoint={}", emulator.upstream_endpoint(hub));
    let mut args = vec!["warm", endpoint.as_str()];
    args.extend(&images[..2]);
    let (_, document) = emulator.json_output(&args, &[("AWS_MAX_ATTEMPTS", "3")]);
    assert_eq!(statuses(&document), ["skipped", "skipped"], "{document}");
    assert!(document["images"]
        .as_array()
        .unwrap()
        .iter()
        .all(|image| image["failure_code"] == "UpstreamPullBudget"));
}
