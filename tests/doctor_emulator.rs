//! `doctor` against the pull-through cache emulator: each check, the JSON
//! document, the text report and the exit codes.

mod support;

use std::process::Command;

use aws_sdk_ecr::types::{ImageTagMutability, RctAppliedFor};
use serde_json::{json, Value};
use support::{EmulatorDir, MotoServer};

const BIN: &str = env!("CARGO_BIN_EXE_ecr-cache-warmer");
const SECRET: &str =
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/docker-hub-AbC123";

/// The registry of the article: a rule for ECR Public and a registry policy
/// that allows the cache only under ecr-public/docker/.
fn article() -> Value {
    json!({
        "rules": [{"ecrRepositoryPrefix": "ecr-public", "upstreamRegistryUrl": "public.ecr.aws"}],
        "registry_policy": {"Version": "2012-10-17", "Statement": [{
            "Sid": "PullThroughCache", "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
            "Action": ["ecr:CreateRepository", "ecr:BatchImportUpstreamImage"],
            "Resource": "arn:aws:ecr:us-east-1:123456789012:repository/ecr-public/docker/*"
        }]},
        "repositories": [
            {"repositoryName": "ecr-public/docker/library/redis", "imageTagMutability": "IMMUTABLE"},
            {"repositoryName": "ecr-public/docker/library/nginx"}
        ]
    })
}

fn doctor(server: &MotoServer, args: &[&str]) -> (Option<i32>, Value) {
    server.json_output(&[&["doctor"], args].concat(), &[])
}

/// The finding of `check` about `subject`.
fn finding<'a>(document: &'a Value, check: &str, subject: &str) -> &'a Value {
    document["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == check && f["subject"] == subject)
        .unwrap_or_else(|| panic!("no {check} finding about {subject}: {document:#}"))
}

fn status<'a>(document: &'a Value, check: &str, subject: &str) -> &'a str {
    finding(document, check, subject)["status"]
        .as_str()
        .unwrap()
}

#[test]
fn the_articles_registry_warns_before_the_first_pull() {
    let dir = EmulatorDir::new(article());
    let emulator = MotoServer::start_emulator(&dir.config);
    let (code, document) = doctor(
        &emulator,
        &[
            "public.ecr.aws/nginx/nginx:1.27",
            "public.ecr.aws/docker/library/redis:7",
        ],
    );
    assert_eq!(code, Some(0), "warnings only: {document:#}");
    assert_eq!(
        document["caller"],
        json!({"account": "123456789012", "arn": "arn:aws:sts::123456789012:user/moto"})
    );
    assert_eq!(document["region"], "us-east-1");
    assert_eq!(
        document["summary"],
        json!({"ok": 3, "warning": 3, "error": 0})
    );

    let policy = finding(&document, "registry-policy", "ecr-public");
    assert_eq!(policy["status"], "warning");
    let message = policy["message"].as_str().unwrap();
    assert!(
        message.contains("only on repository/ecr-public/docker/*")
            && message.contains("does not exist"),
        "{message}"
    );
    assert!(policy["fix"]
        .as_str()
        .unwrap()
        .contains("arn:aws:ecr:us-east-1:123456789012:repository/ecr-public/*"));

    let nginx = finding(
        &document,
        "registry-policy",
        "public.ecr.aws/nginx/nginx:1.27",
    );
    assert_eq!(nginx["status"], "warning");
    assert!(nginx["message"].as_str().unwrap().starts_with(
        "ecr-public/nginx/nginx will fail its first pull with \"repository ecr-public/nginx/nginx does not exist\""
    ));
    assert_eq!(
        status(
            &document,
            "registry-policy",
            "public.ecr.aws/docker/library/redis:7"
        ),
        "ok"
    );

    let immutable = finding(
        &document,
        "cache-repository",
        "ecr-public/docker/library/redis",
    );
    assert_eq!(immutable["status"], "warning");
    assert!(immutable["fix"]
        .as_str()
        .unwrap()
        .contains("--image-tag-mutability MUTABLE"));
    assert_eq!(
        status(&document, "upstream-credential", "ecr-public"),
        "ok",
        "no credential to validate"
    );
    let template = finding(&document, "creation-template", "ecr-public");
    assert_eq!(template["status"], "ok");
    assert!(template["message"].as_str().unwrap().contains("AES256"));

    // Every finding has the five fields.
    for finding in document["findings"].as_array().unwrap() {
        let keys: Vec<&str> = finding
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 5, "{finding}");
        for key in ["check", "status", "subject", "message", "fix"] {
            assert!(keys.contains(&key), "{key} in {finding}");
        }
    }
}

#[test]
fn credentials_templates_and_a_deny_are_judged() {
    let mut config = article();
    config["rules"]
        .as_array_mut()
        .unwrap()
        .push(json!({"ecrRepositoryPrefix": "docker-hub",
                     "upstreamRegistryUrl": "registry-1.docker.io", "credentialArn": SECRET}));
    config["invalid_credentials"] =
        json!({"ecr-pullthroughcache/docker-hub": "the access token has expired"});
    let dir = EmulatorDir::new(config);
    let emulator = MotoServer::start_emulator(&dir.config);

    let (code, document) = doctor(&emulator, &[]);
    assert_eq!(code, Some(1), "an invalid credential is an error");
    let credential = finding(&document, "upstream-credential", "docker-hub");
    assert_eq!(credential["status"], "error");
    assert!(credential["message"]
        .as_str()
        .unwrap()
        .contains("the access token has expired"));
    assert!(credential["fix"].as_str().unwrap().contains(
        "secret ecr-pullthroughcache/docker-hub, as the JSON keys username and accessToken"
    ));

    // A rule given with --rule is not validated: its credential is not known.
    let (code, document) = doctor(&emulator, &["--rule", "docker-hub=registry-1.docker.io"]);
    assert_eq!(code, Some(0), "{document:#}");
    let given = finding(&document, "upstream-credential", "docker-hub");
    assert!(given["message"]
        .as_str()
        .unwrap()
        .starts_with("not validated"));

    // A template that makes the cache's repositories immutable, and a Deny.
    let ecr = emulator.ecr();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        ecr.create_repository_creation_template()
            .prefix("docker-hub")
            .applied_for(RctAppliedFor::PullThroughCache)
            .image_tag_mutability(ImageTagMutability::Immutable)
            .send()
            .await
            .unwrap();
        let policy = json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "Everything", "Effect": "Allow", "Principal": "*", "Action": "ecr:*",
             "Resource": "*"},
            {"Sid": "NoNewNginx", "Effect": "Deny", "Principal": {"AWS": "123456789012"},
             "Action": "ecr:CreateRepository",
             "Resource": "arn:aws:ecr:us-east-1:123456789012:repository/ecr-public/nginx/*"}
        ]});
        ecr.put_registry_policy()
            .policy_text(policy.to_string())
            .send()
            .await
            .unwrap();
    });
    let (code, document) = doctor(
        &emulator,
        &[
            "--rule",
            "docker-hub=registry-1.docker.io",
            "--rule",
            "ecr-public=public.ecr.aws",
            "public.ecr.aws/nginx/nginx:1.27",
            "public.ecr.aws/docker/library/nginx:1.27",
        ],
    );
    assert_eq!(code, Some(1), "a Deny is an error");
    let template = finding(&document, "creation-template", "docker-hub");
    assert_eq!(template["status"], "warning");
    assert!(template["message"]
        .as_str()
        .unwrap()
        .contains("IMMUTABLE tags"));
    assert_eq!(
        status(&document, "creation-template", "ecr-public"),
        "ok",
        "the template is docker-hub's"
    );
    let denied = finding(&document, "registry-policy", "ecr-public");
    assert_eq!(denied["status"], "error");
    assert!(denied["message"]
        .as_str()
        .unwrap()
        .contains("repository/ecr-public/nginx/* (NoNewNginx)"));
    assert_eq!(
        status(
            &document,
            "registry-policy",
            "public.ecr.aws/nginx/nginx:1.27"
        ),
        "error"
    );
    assert_eq!(
        status(
            &document,
            "registry-policy",
            "public.ecr.aws/docker/library/nginx:1.27"
        ),
        "ok",
        "it exists: no CreateRepository needed"
    );
    assert_eq!(status(&document, "registry-policy", "docker-hub"), "ok");
}

#[test]
fn the_text_report_names_the_caller_first_and_the_checks_need_a_region() {
    let dir = EmulatorDir::new(article());
    let emulator = MotoServer::start_emulator(&dir.config);
    let output = Command::new(BIN)
        .args(["doctor", "quay.io/prometheus/node-exporter:v1.8.2"])
        .envs(emulator.env())
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.starts_with(
            "caller: arn:aws:sts::123456789012:user/moto (account 123456789012), Region us-east-1\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("error    image"),
        "an image no rule covers: {text}"
    );
    assert!(
        text.contains("fix: aws ecr put-image-tag-mutability --repository-name ecr-public/docker/library/redis"),
        "{text}"
    );
    assert!(
        text.ends_with("\n5 findings: 2 ok, 2 warnings, 1 error\n"),
        "{text}"
    );

    let output = Command::new(BIN)
        .arg("doctor")
        .envs(emulator.env())
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let error = String::from_utf8(output.stderr).unwrap();
    assert!(error.contains("no AWS Region is set"), "{error}");

    let output = Command::new(BIN)
        .arg("doctor")
        .envs(emulator.env())
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let error = String::from_utf8(output.stderr).unwrap();
    assert!(error.contains("sts:GetCallerIdentity"), "{error}");
}

#[test]
fn doctor_shows_the_pulls_docker_hub_has_left() {
    let dir = EmulatorDir::new(json!({
        "rules": [{"ecrRepositoryPrefix": "docker-hub", "upstreamRegistryUrl": "registry-1.docker.io"}],
        "upstream_pull_limits": {"registry-1.docker.io": {"limit": 200, "remaining": 150}}
    }));
    let server = MotoServer::start_emulator(&dir.config);
    let endpoint = format!(
        "--upstream-endpoint={}",
        server.upstream_endpoint("registry-1.docker.io")
    );
    let (_, document) = doctor(&server, &[&endpoint, "nginx:1.26"]);
    let pulls = finding(&document, "upstream-pulls", "docker-hub");
    assert_eq!(pulls["status"], "ok");
    assert_eq!(
        pulls["message"],
        "150 of 200 pulls left in the upstream's 6 h window"
    );

    let dir = EmulatorDir::new(json!({
        "rules": [{"ecrRepositoryPrefix": "docker-hub", "upstreamRegistryUrl": "registry-1.docker.io"}],
        "upstream_pull_limits": {"registry-1.docker.io": {"limit": 200, "remaining": 5}}
    }));
    let server = MotoServer::start_emulator(&dir.config);
    let endpoint = format!(
        "--upstream-endpoint={}",
        server.upstream_endpoint("registry-1.docker.io")
    );
    let (_, document) = doctor(&server, &[&endpoint, "nginx:1.26"]);
    let pulls = finding(&document, "upstream-pulls", "docker-hub");
    assert_eq!(pulls["status"], "warning", "{pulls}");
    assert!(pulls["fix"].as_str().unwrap().contains("reserve of 10%"));
}
