//! `ecr-cache-warmer plan` as users run it.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use support::TempDir;

mod support;

const BIN: &str = env!("CARGO_BIN_EXE_ecr-cache-warmer");

fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        // No network call may happen with --rule: an unreachable endpoint proves it.
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_MAX_ATTEMPTS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect()
}

#[test]
fn plans_docker_hub_image_onto_its_cache_repository() {
    let output = run(
        &[
            "plan",
            "--rule",
            "docker-hub=registry-1.docker.io",
            "nginx:1.27",
        ],
        "",
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let row = stdout.lines().nth(1).unwrap();
    assert!(
        row.contains("docker-hub/library/nginx") && row.contains("1.27"),
        "{stdout}"
    );
}

#[test]
fn json_lines_follow_the_input_and_a_bad_line_stands_alone() {
    let output = run(
        &[
            "plan",
            "--output",
            "json",
            "--rule",
            "docker-hub=registry-1.docker.io",
            "--rule",
            "ecr-public=public.ecr.aws",
            "nginx:1.27",
            "Nginx:1",
            "public.ecr.aws/docker/library/nginx:1.21.4",
            "quay.io/prometheus/node-exporter@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa",
        ],
        "",
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 4);
    assert_eq!(
        lines[0],
        serde_json::json!({
            "input": "nginx:1.27", "valid": true, "error": null,
            "reference": "docker.io/library/nginx:1.27", "registry": "docker.io",
            "repository": "library/nginx", "tag": "1.27",
            "cache_repository": "docker-hub/library/nginx", "rule": "docker-hub=registry-1.docker.io",
            "source": "list"
        })
    );
    assert_eq!(lines[1]["input"], "Nginx:1");
    assert_eq!(lines[1]["valid"], false);
    assert_eq!(
        lines[1]["error"],
        "repository name must be lowercase: library/Nginx"
    );
    assert_eq!(lines[1]["cache_repository"], Value::Null);
    assert_eq!(
        lines[2]["cache_repository"],
        "ecr-public/docker/library/nginx"
    );
    assert_eq!(lines[2]["tag"], "1.21.4");
    assert!(
        lines[2].get("digest").is_none(),
        "digest is absent when not written"
    );
    assert_eq!(lines[3]["valid"], true);
    assert!(lines[3].get("tag").is_none());
    assert_eq!(
        lines[3]["digest"],
        "sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"
    );
    assert_eq!(lines[3]["rule"], Value::Null);
    assert!(lines[3]["error"]
        .as_str()
        .unwrap()
        .contains("no pull-through cache rule for registry quay.io"));
}

#[test]
fn reads_an_images_file_from_stdin() {
    let list = "# base images\nnginx:1.27\n\n  redis:7   # cache\n";
    let output = run(
        &[
            "plan",
            "--output",
            "json",
            "--rule",
            "docker-hub=registry-1.docker.io",
            "-f",
            "-",
        ],
        list,
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let inputs: Vec<Value> = json_lines(&output)
        .iter()
        .map(|l| l["input"].clone())
        .collect();
    assert_eq!(inputs, ["nginx:1.27", "redis:7"]);
}

#[test]
fn reads_an_images_file_from_disk() {
    let dir = TempDir::new();
    let path = dir.path.join("images.txt");
    std::fs::write(&path, "alpine:3.20\nbusybox\n").unwrap();
    let output = run(
        &[
            "plan",
            "--rule",
            "docker-hub=registry-1.docker.io",
            "--images-file",
            path.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("docker-hub/library/alpine")
            && stdout.contains("docker-hub/library/busybox"),
        "{stdout}"
    );
}

#[test]
fn bad_usage_exits_2_with_a_message() {
    let cases: [(&[&str], &str); 6] = [
        (
            &[
                "plan",
                "--upstream-endpoint",
                "quay.io",
                "--rule",
                "docker-hub=registry-1.docker.io",
                "nginx",
            ],
            "invalid value 'quay.io' for '--upstream-endpoint <REGISTRY=URL>'",
        ),
        (
            &[
                "plan",
                "--upstream-endpoint",
                "quay.io=http://127.0.0.1:1",
                "--upstream-endpoint",
                "quay.io=http://127.0.0.1:2",
                "--rule",
                "docker-hub=registry-1.docker.io",
                "nginx",
            ],
            "invalid --upstream-endpoint",
        ),
        (
            &["plan", "--rule", "docker-hub", "nginx"],
            "invalid rule \"docker-hub\"",
        ),
        (
            &["plan", "--rule", "docker-hub=registry-1.docker.io"],
            "no images given",
        ),
        (
            &[
                "plan",
                "--rule",
                "docker-hub=registry-1.docker.io",
                "-f",
                "/nonexistent/list.txt",
                "nginx",
            ],
            "cannot read images file /nonexistent/list.txt",
        ),
        (
            &["plan", "--output", "yaml", "nginx"],
            "invalid value 'yaml'",
        ),
    ];
    for (args, expected) in cases {
        let output = run(args, "");
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn unreadable_rules_are_one_clear_error() {
    let output = run(&["plan", "nginx"], "");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: could not read the pull-through cache rules from ECR: cannot reach the AWS endpoint"), "{stderr}");
}

#[test]
fn an_unwritable_metrics_file_stops_the_warm_before_it_starts() {
    let output = run(
        &[
            "warm",
            "--rule",
            "docker-hub=registry-1.docker.io",
            "--emf",
            "/nonexistent-folder/warm.emf",
            "nginx:1.27",
        ],
        "",
    );
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot write metrics file /nonexistent-folder/warm.emf"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "nothing was warmed");
}

#[test]
fn a_report_that_cannot_be_written_is_a_failure() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        return; // Not a Linux machine: there is no device that refuses writes.
    };
    let output = Command::new(BIN)
        .args([
            "plan",
            "--rule",
            "docker-hub=registry-1.docker.io",
            "nginx:1.27",
        ])
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot write the report"));
}

#[test]
fn a_list_line_that_is_not_utf8_fails_alone() {
    let dir = TempDir::new();
    let list = dir.path.join("images.txt");
    std::fs::write(&list, b"nginx:1.27\nredis:\xff7\nalpine:3.20\n").unwrap();
    let output = run(
        &[
            "plan",
            "--rule",
            "docker-hub=registry-1.docker.io",
            "--output",
            "json",
            "-f",
            list.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let lines = json_lines(&output);
    let valid: Vec<bool> = lines
        .iter()
        .map(|l| l["valid"].as_bool().unwrap())
        .collect();
    assert_eq!(valid, [true, false, true]);
    assert_eq!(
        lines[1]["error"],
        "line 2 is not valid UTF-8 (byte 0xff at column 7): save the list as UTF-8"
    );
}

#[test]
fn selectors_are_shown_unresolved_and_a_malformed_one_fails_alone() {
    let output = run(
        &[
            "plan",
            "--rule",
            "docker-hub=registry-1.docker.io",
            "-f",
            "-",
        ],
        "nginx:>=1.26, <1.28 newest=3   # a comma inside a selector\nnginx:~1.27 newest=500\nredis:7\n",
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let table = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[1].starts_with("nginx:>=1.26, <1.28 newest=3")
            && lines[1].contains("docker-hub/library/nginx")
            && lines[1].contains("selector: tags listed with --resolve"),
        "{table}"
    );
    assert!(
        lines[2].contains("error: invalid") && lines[2].contains("500"),
        "{table}"
    );
    assert!(lines[3].starts_with("redis:7"), "{table}");
}
