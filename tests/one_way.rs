//! The command line and the function go the one way through: the same list,
//! warmed by `warm --output json` and by a direct invocation of the function,
//! each against an emulator of its own, gives the same outcome per image.

mod support;

use ecr_cache_warmer::lambda::{self, Settings, Warmer};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};
use support::{EmulatorDir, MotoServer};

const IMAGES: [&str; 6] = [
    "nginx:1.27",
    "nginx:1.26",
    "quay.io/prometheus/node-exporter:v1.8.2",
    "nginx:~1.27 match=-alpine$ newest=2",
    "bitnami/redis:7",
    "nginx:0.0-missing",
];

fn emulator() -> (EmulatorDir, MotoServer) {
    let dir = EmulatorDir::new(json!({
        "rules": [
            {"ecrRepositoryPrefix": "docker-hub", "upstreamRegistryUrl": "registry-1.docker.io"},
            {"ecrRepositoryPrefix": "quay", "upstreamRegistryUrl": "quay.io"}
        ],
        "denied_namespaces": ["docker-hub/bitnami"]
    }));
    let server = MotoServer::start_emulator(&dir.config);
    (dir, server)
}

fn endpoint(server: &MotoServer) -> String {
    server.upstream_endpoint("registry-1.docker.io")
}

/// What a person reads of each image, without times.
fn outcomes(document: &Value) -> Vec<Value> {
    document["images"]
        .as_array()
        .unwrap_or_else(|| panic!("a warm document: {document}"))
        .iter()
        .map(|image| {
            let platforms: Vec<Value> = image["platforms"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| json!([p["platform"], p["digest"], p["status"], p["layers"]]))
                .collect();
            json!({
                "input": image["input"], "selector": image["selector"],
                "cache_repository": image["cache_repository"], "tag": image["tag"],
                "digest": image["digest"], "status": image["status"],
                "failure_code": image["failure_code"], "hint": image["hint"],
                "platforms": platforms,
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_command_line_and_a_direct_invocation_report_alike() {
    let (_cli_dir, cli_emulator) = emulator();
    let endpoint_arg = format!("--upstream-endpoint={}", endpoint(&cli_emulator));
    let args: Vec<&str> = ["warm", "--layer-wait", "5s", endpoint_arg.as_str()]
        .into_iter()
        .chain(IMAGES)
        .collect();
    let (code, by_cli) = cli_emulator.json_output(&args, &[]);
    assert_eq!(code, Some(1), "two images fail: {by_cli}");

    let (_function_dir, function_emulator) = emulator();
    let upstream = endpoint(&function_emulator);
    let settings = Settings::from_env(|name| match name {
        "WARM_LAYER_WAIT" => Some("5s".to_string()),
        "WARM_UPSTREAM_ENDPOINTS" => Some(upstream.clone()),
        _ => None,
    })
    .unwrap();
    let warmer = Warmer::new(settings, &function_emulator.sdk_config())
        .await
        .unwrap();
    let event = LambdaEvent::new(json!({ "images": IMAGES }), Context::default());
    let by_function = lambda::handle(&warmer, event).await.unwrap();

    let (cli, function) = (outcomes(&by_cli), outcomes(&by_function));
    assert_eq!(cli.len(), 7, "the selector selects two tags: {by_cli}");
    assert_eq!(cli, function);
    let statuses: Vec<&str> = cli.iter().map(|o| o["status"].as_str().unwrap()).collect();
    assert_eq!(
        statuses,
        ["imported", "imported", "imported", "imported", "imported", "failed", "failed"]
    );
    assert_eq!(by_cli["summary"]["total"], by_function["summary"]["total"]);
}
