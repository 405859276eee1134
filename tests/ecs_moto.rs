//! `plan --from-ecs` and `warm --from-ecs` against moto's ECS: clusters,
//! services and task definitions as an account has them.

mod support;

use std::process::{Command, Output};

use aws_sdk_ecs::types::ContainerDefinition;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::MotoServer;

const BIN: &str = env!("CARGO_BIN_EXE_ecr-cache-warmer");
/// moto's account, in moto's Region.
const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

fn ecs_client(moto: &MotoServer) -> aws_sdk_ecs::Client {
    aws_sdk_ecs::Client::new(&moto.sdk_config())
}

async fn register(ecs: &aws_sdk_ecs::Client, family: &str, images: &[&str]) -> String {
    let containers = images.iter().enumerate().map(|(i, image)| {
        ContainerDefinition::builder()
            .name(format!("c{i}"))
            .image(image.replace("HOST", HOST))
            .memory(128)
            .build()
    });
    let output = ecs
        .register_task_definition()
        .family(family)
        .set_container_definitions(Some(containers.collect()))
        .send()
        .await
        .expect("moto registers the task definition");
    output
        .task_definition()
        .and_then(|d| d.task_definition_arn())
        .unwrap()
        .to_string()
}

async fn service(ecs: &aws_sdk_ecs::Client, cluster: &str, name: &str, task_definition: &str) {
    ecs.create_service()
        .cluster(cluster)
        .service_name(name)
        .task_definition(task_definition)
        .desired_count(1)
        .send()
        .await
        .expect("moto creates the service");
}

/// Two clusters: `prod` runs `web` and `api` (which share an image), `empty`
/// runs nothing. The family `batch` runs in no service; its revision 3 was
/// deregistered, so 2 is its latest ACTIVE one.
async fn seed_account(ecs: &aws_sdk_ecs::Client) {
    for cluster in ["prod", "empty"] {
        ecs.create_cluster()
            .cluster_name(cluster)
            .send()
            .await
            .unwrap();
    }
    let web = register(
        ecs,
        "web",
        &["HOST/docker-hub/library/nginx:1.27", "nginx:1.27"],
    )
    .await;
    let api = register(
        ecs,
        "api",
        &[
            "HOST/quay/prometheus/node-exporter:v1.8.2",
            "HOST/docker-hub/library/nginx:1.27",
            "HOST/team/api:4.1",
        ],
    )
    .await;
    service(ecs, "prod", "web", &web).await;
    service(ecs, "prod", "api", &api).await;
    register(ecs, "batch", &["HOST/docker-hub/library/alpine:3.19"]).await;
    register(ecs, "batch", &["HOST/docker-hub/library/alpine:3.20"]).await;
    let withdrawn = register(ecs, "batch", &["HOST/docker-hub/library/alpine:3.21"]).await;
    ecs.deregister_task_definition()
        .task_definition(withdrawn)
        .send()
        .await
        .unwrap();
}

fn run(moto: &MotoServer, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .envs(moto.env())
        .output()
        .unwrap()
}

/// `(input, source, cache repository or why not warmed)` of each JSON record.
fn summary(records: &[Value]) -> Vec<(String, String, String)> {
    records
        .iter()
        .map(|r| {
            let outcome = match r["cache_repository"].as_str() {
                Some(repository) => repository.to_string(),
                None => format!("not warmed: {}", r["not_warmed"].as_str().unwrap_or("?")),
            };
            (
                r["input"].as_str().unwrap().replace(HOST, "HOST"),
                r["source"].as_str().unwrap().to_string(),
                outcome,
            )
        })
        .collect()
}

fn expected(rows: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    rows.iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_and_warm_list_what_ecs_runs_with_its_source() {
    let moto = MotoServer::start();
    seed_account(&ecs_client(&moto)).await;
    let rules = [
        "--rule",
        "docker-hub=registry-1.docker.io",
        "--rule",
        "quay=quay.io",
    ];

    let mut args = vec!["plan", "--from-ecs=families", "--output", "json"];
    args.extend(rules);
    args.push("redis:7");
    let output = run(&moto, &args);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let records: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let rows = summary(&records);
    assert_eq!(
        rows[..4],
        expected(&[
            ("redis:7", "list", "docker-hub/library/redis"),
            (
                "HOST/quay/prometheus/node-exporter:v1.8.2",
                "ecs-service:prod/api",
                "quay/prometheus/node-exporter"
            ),
            (
                "HOST/docker-hub/library/nginx:1.27",
                "ecs-service:prod/api",
                "docker-hub/library/nginx"
            ),
            (
                "HOST/team/api:4.1",
                "ecs-service:prod/api",
                "not warmed: team/api is a repository of the registry itself, under no \
                 pull-through cache rule's prefix: ECS pulls it as it is"
            ),
        ])
    );
    assert_eq!(rows[4].0, "nginx:1.27");
    assert_eq!(rows[4].1, "ecs-service:prod/web");
    assert!(
        rows[4]
            .2
            .starts_with("not warmed: ECS pulls it from docker.io itself"),
        "{rows:?}"
    );
    assert_eq!(
        rows[5..],
        expected(&[(
            "HOST/docker-hub/library/alpine:3.20",
            "ecs-family:batch:2",
            "docker-hub/library/alpine"
        )]),
        "each image once, the deregistered revision left out: {rows:?}"
    );
    assert_eq!(
        records[1]["reference"],
        format!("{HOST}/quay/prometheus/node-exporter:v1.8.2")
    );

    // The table shows where each image came from; one cluster only, without families.
    let mut args = vec!["plan", "--from-ecs", "--ecs-cluster", "empty"];
    args.extend(rules);
    let output = run(&moto, &args);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 1);
    let mut args = vec!["plan", "--from-ecs"];
    args.extend(rules);
    let output = run(&moto, &args);
    let table = String::from_utf8_lossy(&output.stdout);
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("IMAGE") && header.contains("SOURCE"),
        "{table}"
    );
    assert!(!table.contains("ecs-family"), "{table}");

    // A cluster that does not exist is one clear error.
    let mut args = vec!["plan", "--from-ecs", "--ecs-cluster", "nowhere"];
    args.extend(rules);
    let output = run(&moto, &args);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("error: ECS ListServices failed for cluster nowhere: ")
            && stderr.lines().count() == 1,
        "{stderr}"
    );

    // warm: what goes through the cache is warmed (manifests only: moto has no
    // layer URLs), the rest reported beside the images.
    seed_image(&moto.ecr(), "docker-hub/library/nginx", "1.27").await;
    let mut args = vec![
        "warm",
        "--from-ecs",
        "--layers",
        "none",
        "--output",
        "json",
        "--ecs-cluster",
        "prod",
    ];
    args.extend(rules);
    let output = run(&moto, &args);
    let document: Value = serde_json::from_slice(&output.stdout).expect("one JSON document");
    let images = document["images"].as_array().unwrap();
    let nginx = images
        .iter()
        .find(|i| i["cache_repository"] == "docker-hub/library/nginx")
        .unwrap();
    assert_eq!(
        (&nginx["status"], &nginx["source"]),
        (&json!("unchanged"), &json!("ecs-service:prod/api")),
        "{document}"
    );
    let not_warmed: Vec<&str> = document["not_warmed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["input"].as_str().unwrap())
        .collect();
    assert_eq!(
        not_warmed,
        [format!("{HOST}/team/api:4.1").as_str(), "nginx:1.27"]
    );
    assert_eq!(document["summary"]["total"], 2, "{document}");
}

/// Stores an image manifest in moto's ECR under `tag`.
async fn seed_image(ecr: &aws_sdk_ecr::Client, repository: &str, tag: &str) {
    ecr.create_repository()
        .repository_name(repository)
        .send()
        .await
        .unwrap();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{:064x}", 1), "size": 1470},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": format!("sha256:{:064x}", 2), "size": 1000}]
    })
    .to_string();
    ecr.put_image()
        .repository_name(repository)
        .image_manifest(&manifest)
        .image_tag(tag)
        .image_digest(format!("sha256:{:x}", Sha256::digest(manifest.as_bytes())))
        .send()
        .await
        .unwrap();
}
