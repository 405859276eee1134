//! Selectors end to end: `plan --resolve` and `warm` list the upstream's tags
//! through the emulator's registry API (token flow, pages, rate limits, the
//! rule's credential from Secrets Manager), then warm what they select through
//! its pull-through cache.

mod support;

use std::process::Command;

use serde_json::{json, Value};
use support::{EmulatorDir, MotoServer};

const BIN: &str = env!("CARGO_BIN_EXE_ecr-cache-warmer");
const REGISTRIES: [&str; 3] = ["registry-1.docker.io", "quay.io", "localhost:5000"];

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn emulator(extra: Value) -> (EmulatorDir, MotoServer) {
    let mut config = json!({
        "rules": [
            {"ecrRepositoryPrefix": "docker-hub", "upstreamRegistryUrl": "registry-1.docker.io"},
            {"ecrRepositoryPrefix": "quay", "upstreamRegistryUrl": "quay.io"}
        ],
        // Small pages, whatever n asks: a listing of nginx's 22 tags follows Link headers.
        "upstream_max_page_size": 5
    });
    for (key, value) in extra.as_object().unwrap() {
        config[key] = value.clone();
    }
    let dir = EmulatorDir::new(config);
    let server = MotoServer::start_emulator(&dir.config);
    (dir, server)
}

/// The binary, pointed at the emulator for AWS and for every upstream.
fn run(server: &MotoServer, args: &[&str]) -> Run {
    let mut command = Command::new(BIN);
    command.args(args);
    for registry in REGISTRIES {
        command.arg(format!(
            "--upstream-endpoint={registry}={}/upstream/{registry}",
            server.endpoint
        ));
    }
    let output = command
        .envs(server.env())
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    Run {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

fn lines(run: &Run) -> Vec<Value> {
    run.stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("JSON: {line}")))
        .collect()
}

fn document(run: &Run) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|_| panic!("a JSON document: {}\n{}", run.stdout, run.stderr))
}

/// The emulator's log of the upstream requests it served.
async fn upstream_requests(server: &MotoServer) -> Vec<Value> {
    let url = format!("{}/upstream/_requests", server.endpoint);
    let body = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
    serde_json::from_slice(&body).unwrap()
}

#[test]
fn every_row_of_the_grammar_resolves_as_documented() {
    let (_dir, server) = emulator(json!({}));
    create_rule(&server, "team", "localhost:5000", None);
    let rows: [(&str, &[&str]); 7] = [
        ("nginx:~1.27", &["1.27.3"]),
        ("nginx:~1.26 newest=2", &["1.26.3", "1.26.2"]),
        (
            "nginx:>=1.26 <1.28 newest=10",
            &[
                "1.27.3", "1.27.2", "1.27.1", "1.27.0", "1.26.3", "1.26.2", "1.26.1", "1.26.0",
            ],
        ),
        ("nginx:1.27.*", &["1.27.3"]),
        (
            "nginx:~1.27 match=-alpine$ newest=5",
            &[
                "1.27.3-alpine",
                "1.27.2-alpine",
                "1.27.1-alpine",
                "1.27.0-alpine",
            ],
        ),
        (
            r"quay.io/prometheus/node-exporter:match=^v1\.8\.\d+$ newest=2",
            &["v1.8.2", "v1.8.1"],
        ),
        ("localhost:5000/team/app:^2", &["2.1.1"]),
    ];
    let entries: Vec<&str> = rows.iter().map(|(entry, _)| *entry).collect();
    let mut args = vec!["plan", "--resolve", "--output", "json"];
    args.extend(&entries);
    let planned = run(&server, &args);
    assert_eq!(planned.code, Some(0), "{}", planned.stderr);

    let records = lines(&planned);
    let mut records = records.iter();
    for (entry, tags) in rows {
        for tag in tags {
            let record = records.next().unwrap_or_else(|| panic!("{entry}: {tag}"));
            assert_eq!(record["selector"], entry, "{record}");
            assert_eq!(record["tag"], *tag, "{entry}: {record}");
            assert_eq!(record["valid"], true);
            assert!(record["error"].is_null(), "{record}");
        }
    }
    assert!(records.next().is_none(), "nothing more is selected");

    let selected = lines(&planned);
    let team = selected.last().unwrap();
    assert_eq!(team["reference"], "localhost:5000/team/app:2.1.1");
    assert_eq!(team["cache_repository"], "team/team/app");
    let official = &selected[0];
    assert_eq!(official["reference"], "docker.io/library/nginx:1.27.3");
    assert_eq!(official["input"], "nginx:1.27.3");
}

#[test]
fn plan_shows_selectors_unresolved_without_asking_upstream() {
    let (_dir, server) = emulator(json!({}));
    let planned = run(
        &server,
        &[
            "plan",
            "--output",
            "json",
            "--rule",
            "docker-hub=registry-1.docker.io",
            "nginx:~1.27",
            "nginx:~1.27 newest=0",
        ],
    );
    assert_eq!(planned.code, Some(1), "the malformed selector fails");
    let records = lines(&planned);
    assert_eq!(records[0]["selector"], "nginx:~1.27");
    assert_eq!(records[0]["repository"], "library/nginx");
    assert_eq!(records[0]["cache_repository"], "docker-hub/library/nginx");
    assert!(records[0]["tag"].is_null() && records[0]["error"].is_null());
    let error = records[1]["error"].as_str().unwrap();
    assert!(error.contains("newest") && error.contains('0'), "{error}");
    let requests = tokio_block_on(upstream_requests(&server));
    assert!(
        requests.is_empty(),
        "plan without --resolve lists nothing: {requests:?}"
    );
}

#[test]
fn a_selector_that_selects_nothing_fails_and_shows_the_newest_tags() {
    let (_dir, server) = emulator(json!({}));
    let planned = run(
        &server,
        &["plan", "--resolve", "--output", "json", "nginx:~1.29"],
    );
    assert_eq!(planned.code, Some(1));
    let records = lines(&planned);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["selector"], "nginx:~1.29");
    let error = records[0]["error"].as_str().unwrap();
    assert!(
        error.contains("selects none of the 22 tags")
            && error.contains("1.28.0, 1.27.4-rc1, 1.27.3"),
        "{error}"
    );

    let warmed = run(&server, &["warm", "--output", "json", "nginx:~1.29"]);
    assert_eq!(warmed.code, Some(1));
    let image = &document(&warmed)["images"][0];
    assert_eq!(image["failure_code"], "NoMatchingTag");
    assert_eq!(image["selector"], "nginx:~1.29");
    assert!(image["hint"].as_str().unwrap().contains("plan --resolve"));
}

#[test]
fn warm_pulls_what_selectors_select_and_names_the_selector_of_each_image() {
    let (_dir, server) = emulator(json!({}));
    let warmed = run(
        &server,
        &[
            "warm",
            "--output",
            "json",
            "nginx:~1.27 match=-alpine$ newest=2",
            "redis:7",
            r"quay.io/prometheus/node-exporter:match=^v1\.8\.\d+$ newest=2",
            "nginx:~1.26",
        ],
    );
    assert_eq!(warmed.code, Some(0), "{}", warmed.stderr);
    let document = document(&warmed);
    let images: Vec<(&str, &str, Value)> = document["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|image| {
            (
                image["input"].as_str().unwrap(),
                image["status"].as_str().unwrap(),
                image["selector"].clone(),
            )
        })
        .collect();
    let alpine = json!("nginx:~1.27 match=-alpine$ newest=2");
    let exporter = json!(r"quay.io/prometheus/node-exporter:match=^v1\.8\.\d+$ newest=2");
    assert_eq!(
        images,
        [
            ("nginx:1.27.3-alpine", "imported", alpine.clone()),
            ("nginx:1.27.2-alpine", "imported", alpine),
            ("redis:7", "imported", Value::Null),
            (
                "quay.io/prometheus/node-exporter:v1.8.2",
                "imported",
                exporter.clone()
            ),
            (
                "quay.io/prometheus/node-exporter:v1.8.1",
                "imported",
                exporter
            ),
            ("nginx:1.26.3", "imported", json!("nginx:~1.26")),
        ]
    );

    // One listing per repository, however many selectors name it: an anonymous
    // try, a token, then every page with it.
    let requests = tokio_block_on(upstream_requests(&server));
    // Besides the listing, Docker Hub is asked for its pull budget: HEADs only.
    let (heads, listing): (Vec<&Value>, Vec<&Value>) = requests
        .iter()
        .filter(|r| r["registry"] == "registry-1.docker.io")
        .partition(|r| r["path"].as_str().unwrap().contains("/manifests/"));
    assert!(heads.iter().all(|r| r["method"] == "HEAD"), "{heads:?}");
    let nginx: Vec<(&str, &str)> = listing
        .iter()
        .map(|r| (r["path"].as_str().unwrap(), r["auth"].as_str().unwrap()))
        .collect();
    let pages = "/v2/library/nginx/tags/list";
    let mut expected = vec![(pages, "none"), ("/token", "none")];
    expected.extend([(pages, "bearer"); 5]);
    assert_eq!(
        nginx, expected,
        "22 tags in pages of 5, each with the token"
    );
}

#[test]
fn a_rate_limited_listing_waits_for_retry_after_then_succeeds() {
    let (_dir, server) = emulator(json!({
        "upstream_faults": {"throttle_requests": 1, "retry_after_seconds": 1, "unavailable_requests": 1}
    }));
    let planned = run(
        &server,
        &["plan", "--resolve", "--output", "json", "nginx:~1.27"],
    );
    assert_eq!(planned.code, Some(0), "{}", planned.stderr);
    assert_eq!(lines(&planned)[0]["tag"], "1.27.3");
    let statuses: Vec<u64> = tokio_block_on(upstream_requests(&server))
        .iter()
        .filter(|r| r["auth"] == "bearer")
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(&statuses[..3], [429, 503, 200]);
}

#[test]
fn the_rules_secret_opens_a_private_upstream_and_is_never_printed() {
    const TOKEN: &str = "team-token-do-not-print";
    let (_dir, server) = emulator(json!({
        "upstream_credentials": {"localhost:5000": {"username": "warmer", "accessToken": TOKEN}}
    }));
    let arn = tokio_block_on(create_secret(
        &server,
        "ecr-pullthroughcache/team",
        &json!({"username": "warmer", "accessToken": TOKEN}).to_string(),
    ));
    create_rule(&server, "team", "localhost:5000", Some(&arn));

    // Rules read from ECR know their secret.
    let warmed = run(
        &server,
        &["warm", "--output", "json", "localhost:5000/team/app:^2"],
    );
    assert_eq!(warmed.code, Some(0), "{}", warmed.stderr);
    let image = &document(&warmed)["images"][0];
    assert_eq!(
        (&image["input"], &image["status"]),
        (&json!("localhost:5000/team/app:2.1.1"), &json!("imported"))
    );
    let logged = format!("{}{}", warmed.stdout, warmed.stderr);
    assert!(logged.contains("listed upstream"), "debug logs were on");
    assert!(!logged.contains(TOKEN), "the secret leaked: {logged}");

    // A rule given on the command line has no known credential: anonymous, refused.
    let planned = run(
        &server,
        &[
            "plan",
            "--resolve",
            "--output",
            "json",
            "--rule",
            "team=localhost:5000",
            "localhost:5000/team/app:^2",
        ],
    );
    assert_eq!(planned.code, Some(1));
    let error = lines(&planned)[0]["error"].as_str().unwrap().to_string();
    assert!(error.contains("localhost:5000"), "{error}");
    assert!(error.contains("ecr-pullthroughcache"), "{error}");
    let warmed = run(
        &server,
        &[
            "warm",
            "--output",
            "json",
            "--rule",
            "team=localhost:5000",
            "localhost:5000/team/app:^2",
        ],
    );
    let image = &document(&warmed)["images"][0];
    assert_eq!(image["failure_code"], "UpstreamTagsUnavailable");
    assert_eq!(image["cache_repository"], "team/team/app");
}

fn tokio_block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// A pull-through cache rule created in the emulator's ECR.
fn create_rule(server: &MotoServer, prefix: &str, upstream: &str, credential: Option<&str>) {
    let ecr = server.ecr();
    tokio_block_on(
        ecr.create_pull_through_cache_rule()
            .ecr_repository_prefix(prefix)
            .upstream_registry_url(upstream)
            .set_credential_arn(credential.map(str::to_string))
            .send(),
    )
    .expect("the emulator creates the rule");
}

/// A secret in the Secrets Manager of moto, under the emulator; its ARN.
async fn create_secret(server: &MotoServer, name: &str, value: &str) -> String {
    let created = aws_sdk_secretsmanager::Client::new(&server.sdk_config())
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .expect("moto creates the secret");
    created.arn().unwrap().to_string()
}
