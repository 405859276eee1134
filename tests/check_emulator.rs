//! `check` through the pull-through cache emulator: fresh, stale and missing
//! images, a selector and digest pins, exactly; and a check changes nothing:
//! no pull through the cache (nothing imported, no pull time moved) and no
//! manifest GET upstream, only HEADs.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};
use support::{EmulatorDir, MotoServer};

const BIN: &str = env!("CARGO_BIN_EXE_ecr-cache-warmer");
const HUB: &str = "registry-1.docker.io";
const NGINX: &str = "docker-hub/library/nginx";

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// The binary against the emulator, for AWS and for Docker Hub upstream.
fn run(server: &MotoServer, args: &[&str]) -> Run {
    let output = Command::new(BIN)
        .args(args)
        .arg(format!(
            "--upstream-endpoint={HUB}={}/upstream/{HUB}",
            server.endpoint
        ))
        .envs(server.env())
        .env("AWS_MAX_ATTEMPTS", "3")
        .output()
        .unwrap();
    Run {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

fn document(run: &Run) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|_| panic!("a JSON document: {}\n{}", run.stdout, run.stderr))
}

fn move_tag_upstream(catalog: &Path, tag: &str) {
    let mut data: Value = serde_json::from_str(&std::fs::read_to_string(catalog).unwrap()).unwrap();
    let size = &mut data[HUB]["library/nginx"]["tags"][tag]["layers"][0]["size"];
    *size = json!(size.as_u64().unwrap() + 1);
    std::fs::write(catalog, data.to_string()).unwrap();
}

/// What the cache holds of a repository: each digest with its tags and its
/// last recorded pull.
async fn cache_contents(server: &MotoServer, repository: &str) -> BTreeMap<String, Value> {
    let mut pages = server
        .ecr()
        .describe_images()
        .repository_name(repository)
        .into_paginator()
        .send();
    let mut contents = BTreeMap::new();
    while let Some(page) = pages.next().await {
        for detail in page.unwrap().image_details() {
            let mut tags = detail.image_tags().to_vec();
            tags.sort();
            let pulled = detail.last_recorded_pull_time().map(|t| t.as_secs_f64());
            contents.insert(
                detail.image_digest().unwrap().to_string(),
                json!({"tags": tags, "last_pulled": pulled}),
            );
        }
    }
    contents
}

async fn upstream_requests(server: &MotoServer, method: &str) -> Vec<Value> {
    let url = format!("{}/upstream/_requests", server.endpoint);
    let answer = reqwest::Client::new()
        .request(method.parse().unwrap(), &url)
        .send()
        .await
        .unwrap();
    serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap()
}

#[tokio::test]
async fn check_tells_fresh_stale_and_missing_and_pulls_nothing() {
    let dir = EmulatorDir::new(json!({
        "rules": [{"ecrRepositoryPrefix": "docker-hub", "upstreamRegistryUrl": HUB}]
    }));
    let emulator = MotoServer::start_emulator(&dir.config);
    let warmed = run(
        &emulator,
        &[
            "warm",
            "--output",
            "json",
            "nginx:1.27",
            "nginx:1.26",
            "nginx:1.27.3",
        ],
    );
    assert_eq!(warmed.code, Some(0), "{}{}", warmed.stdout, warmed.stderr);

    let (index, _) = emulator
        .upstream_manifest(HUB, "library/nginx", "1.27")
        .await;
    let (old, _) = emulator
        .upstream_manifest(HUB, "library/nginx", "1.26")
        .await;
    let (latest, _) = emulator
        .upstream_manifest(HUB, "library/nginx", "1.27.3")
        .await;
    // The cache checks a tag upstream again only after 24 hours: it keeps the old 1.26.
    move_tag_upstream(&dir.path.join("catalog.json"), "1.26");
    let (new, _) = emulator
        .upstream_manifest(HUB, "library/nginx", "1.26")
        .await;
    assert_ne!(old, new);
    let before = cache_contents(&emulator, NGINX).await;
    upstream_requests(&emulator, "DELETE").await;

    let by_digest = format!("nginx@{index}");
    let pinned = format!("nginx:1.26@{old}");
    let uncached_digest = format!("nginx@{new}");
    let checked = run(
        &emulator,
        &[
            "check",
            "--output",
            "json",
            "nginx:1.27",
            "nginx:1.26",
            "nginx:1.27.1",
            "nginx:~1.27",
            &by_digest,
            &pinned,
            &uncached_digest,
            "ghcr.io/org/app:1",
        ],
    );
    assert_eq!(checked.code, Some(1), "{}", checked.stderr);
    let document = document(&checked);
    let images = document["images"].as_array().unwrap();
    let judged: Vec<(&str, Option<&str>, &str, &Value, &Value)> = images
        .iter()
        .map(|image| {
            (
                image["input"].as_str().unwrap(),
                image["selector"].as_str(),
                image["cache"].as_str().unwrap(),
                &image["cached_digest"],
                &image["upstream_digest"],
            )
        })
        .collect();
    let null = Value::Null;
    let (index, old, new, latest) = (json!(index), json!(old), json!(new), json!(latest));
    assert_eq!(
        judged,
        [
            ("nginx:1.27", None, "fresh", &index, &index),
            ("nginx:1.26", None, "stale", &old, &new),
            ("nginx:1.27.1", None, "missing", &null, &null),
            (
                "nginx:1.27.3",
                Some("nginx:~1.27"),
                "fresh",
                &latest,
                &latest
            ),
            (by_digest.as_str(), None, "fresh", &index, &index),
            (pinned.as_str(), None, "fresh", &old, &old),
            (uncached_digest.as_str(), None, "missing", &null, &new),
            ("ghcr.io/org/app:1", None, "unknown", &null, &null),
        ],
        "{document}"
    );
    assert_eq!(
        document["summary"],
        json!({"total": 8, "fresh": 4, "stale": 1, "missing": 2, "unknown": 1,
               "duration_ms": document["summary"]["duration_ms"]})
    );
    assert!(
        images[7]["error"].as_str().unwrap().contains("ghcr.io"),
        "{}",
        images[7]
    );
    assert_eq!(images[0]["cache_repository"], NGINX);
    assert_eq!(images[0]["tag"], "1.27");
    assert!(images[0]["pushed_at"].as_str().unwrap().ends_with('Z'));
    // warm pulled 1.27 through the cache: ECR recorded it.
    assert!(images[0]["last_pulled"].is_string(), "{}", images[0]);
    assert_eq!(images[2]["last_pulled"], Value::Null);

    // Nothing pulled through the cache: nothing imported (1.27.1 is still not cached) and
    // no pull time moved.
    assert_eq!(cache_contents(&emulator, NGINX).await, before);
    // Upstream, the selector's tags listed and manifests asked with HEAD only: no pull spent.
    let requests = upstream_requests(&emulator, "GET").await;
    let manifests: Vec<(&str, &str)> = requests
        .iter()
        .filter(|r| r["path"].as_str().unwrap().contains("/manifests/"))
        .map(|r| (r["method"].as_str().unwrap(), r["path"].as_str().unwrap()))
        .collect();
    let mut heads: Vec<&str> = manifests.iter().map(|(_, path)| *path).collect();
    heads.sort();
    assert!(
        manifests.iter().all(|(method, _)| *method == "HEAD"),
        "{requests:?}"
    );
    // Only cached tags without a pin are asked: a digest never goes stale.
    assert_eq!(
        heads,
        [
            "/v2/library/nginx/manifests/1.26",
            "/v2/library/nginx/manifests/1.27",
            "/v2/library/nginx/manifests/1.27.3"
        ]
    );
}

#[test]
fn check_says_when_the_upstream_cannot_be_asked_and_shows_a_table() {
    let dir = EmulatorDir::new(json!({
        "rules": [{"ecrRepositoryPrefix": "docker-hub", "upstreamRegistryUrl": HUB}]
    }));
    let emulator = MotoServer::start_emulator(&dir.config);
    let warmed = run(&emulator, &["warm", "--layers", "none", "nginx:1.27"]);
    assert_eq!(warmed.code, Some(0), "{}", warmed.stderr);

    let fresh = run(&emulator, &["check", "nginx:1.27"]);
    assert_eq!(fresh.code, Some(0), "{}{}", fresh.stdout, fresh.stderr);
    let header = fresh.stdout.lines().next().unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        [
            "IMAGE",
            "CACHE",
            "CACHE",
            "REPOSITORY",
            "CACHED",
            "UPSTREAM",
            "LAST",
            "PULLED"
        ]
    );
    assert!(
        fresh
            .stdout
            .contains(&format!("nginx:1.27  fresh  {NGINX}")),
        "{}",
        fresh.stdout
    );
    assert!(
        fresh
            .stdout
            .contains("1 image: 1 fresh, 0 stale, 0 missing, 0 unknown in"),
        "{}",
        fresh.stdout
    );

    // The registry down: the image is unknown with the reason, never counted fresh.
    let down = Command::new(BIN)
        .args(["check", "--output", "json", "nginx:1.27"])
        .arg(format!("--upstream-endpoint={HUB}=http://127.0.0.1:9"))
        .envs(emulator.env())
        .output()
        .unwrap();
    assert_eq!(down.status.code(), Some(1));
    let document: Value = serde_json::from_slice(&down.stdout).unwrap();
    let image = &document["images"][0];
    assert_eq!(image["cache"], "unknown", "{image}");
    assert!(image["cached_digest"].is_string());
    let error = image["error"].as_str().unwrap();
    assert!(error.contains("library/nginx"), "{error}");
    assert_eq!(document["summary"]["unknown"], 1);
}

#[tokio::test]
async fn the_function_answers_a_check_of_the_configured_list_or_of_the_images_sent() {
    use ecr_cache_warmer::lambda::{handle, Settings, Warmer};
    use lambda_runtime::{Context, LambdaEvent};

    let dir = EmulatorDir::new(json!({
        "rules": [{"ecrRepositoryPrefix": "docker-hub", "upstreamRegistryUrl": HUB}]
    }));
    let emulator = MotoServer::start_emulator(&dir.config);
    let warmed = run(&emulator, &["warm", "--layers", "none", "nginx:1.27"]);
    assert_eq!(warmed.code, Some(0), "{}", warmed.stderr);
    let endpoints = format!("{HUB}={}/upstream/{HUB}", emulator.endpoint);
    let env = BTreeMap::from([
        ("WARM_RULES", "docker-hub=registry-1.docker.io".to_string()),
        ("WARM_IMAGES", "nginx:1.27,nginx:1.26".to_string()),
        ("WARM_UPSTREAM_ENDPOINTS", endpoints),
    ]);
    let settings = Settings::from_env(|name| env.get(name).cloned()).unwrap();
    let warmer = Warmer::new(settings, &emulator.sdk_config()).await.unwrap();
    let before = cache_contents(&emulator, NGINX).await;

    let check = |payload: Value| handle(&warmer, LambdaEvent::new(payload, Context::default()));
    let configured = check(json!({"check": true})).await.unwrap();
    let caches: Vec<(&str, &str)> = configured["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["input"].as_str().unwrap(), i["cache"].as_str().unwrap()))
        .collect();
    assert_eq!(caches, [("nginx:1.27", "fresh"), ("nginx:1.26", "missing")]);
    assert_eq!(configured["summary"]["missing"], 1);

    let given = check(json!({"check": ["nginx:~1.26"]})).await.unwrap();
    let image = &given["images"][0];
    assert_eq!(
        (&image["input"], &image["selector"], &image["cache"]),
        (
            &json!("nginx:1.26.3"),
            &json!("nginx:~1.26"),
            &json!("missing")
        )
    );
    // A check warms nothing: nginx:1.26 is still not cached.
    assert_eq!(cache_contents(&emulator, NGINX).await, before);
}
