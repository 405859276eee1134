//! Discovery against mocked ECS answers: pages, a cluster without services,
//! shared task definitions, families, and errors.

use aws_sdk_ecs::operation::describe_services::DescribeServicesOutput;
use aws_sdk_ecs::operation::describe_task_definition::DescribeTaskDefinitionOutput;
use aws_sdk_ecs::operation::list_clusters::ListClustersOutput;
use aws_sdk_ecs::operation::list_services::{ListServicesError, ListServicesOutput};
use aws_sdk_ecs::operation::list_task_definition_families::ListTaskDefinitionFamiliesOutput;
use aws_sdk_ecs::operation::list_task_definitions::ListTaskDefinitionsOutput;
use aws_sdk_ecs::types::error::AccessDeniedException;
use aws_sdk_ecs::types::{ContainerDefinition, Deployment, Service, TaskDefinition};
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};

use super::*;

const ARN: &str = "arn:aws:ecs:us-east-1:123456789012";
const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

fn task_definition_arn(name: &str) -> String {
    format!("{ARN}:task-definition/{name}")
}

/// The images of each task definition, by `family:revision`.
fn images_of(name: &str) -> Vec<String> {
    match name {
        "web:7" => vec![format!("{HOST}/docker-hub/library/nginx:1.27")],
        "web:8" => vec![
            format!("{HOST}/docker-hub/library/nginx:1.27.2"),
            "public.ecr.aws/aws-observability/aws-otel-collector:v0.41.1".into(),
        ],
        "api:3" => vec![
            format!("{HOST}/docker-hub/library/nginx:1.27.2"),
            format!("{HOST}/quay/prometheus/node-exporter:v1.8.2"),
        ],
        "batch:12" => vec![format!("{HOST}/docker-hub/library/alpine:3.20")],
        other => panic!("no task definition {other}"),
    }
}

fn describe_task_definitions() -> Rule {
    mock!(aws_sdk_ecs::Client::describe_task_definition).then_compute_output(|req| {
        let name = req.task_definition().unwrap().rsplit('/').next().unwrap();
        let (family, revision) = name.split_once(':').unwrap();
        let containers = images_of(name)
            .into_iter()
            .map(|image| ContainerDefinition::builder().image(image).build());
        DescribeTaskDefinitionOutput::builder()
            .task_definition(
                TaskDefinition::builder()
                    .task_definition_arn(task_definition_arn(name))
                    .family(family)
                    .revision(revision.parse().unwrap())
                    .set_container_definitions(Some(containers.collect()))
                    .build(),
            )
            .build()
    })
}

fn service(name: &str, task_definitions: &[&str]) -> Service {
    let deployments = task_definitions.iter().map(|td| {
        Deployment::builder()
            .task_definition(task_definition_arn(td))
            .build()
    });
    Service::builder()
        .service_name(name)
        .task_definition(task_definition_arn(task_definitions[0]))
        .set_deployments(Some(deployments.collect()))
        .build()
}

/// Two pages of clusters (`prod`, then `staging` and the empty `idle`); `prod`
/// has two pages of services: `web` deploying revision 8 beside 7, and `api`.
fn account() -> Vec<Rule> {
    let clusters_first = mock!(aws_sdk_ecs::Client::list_clusters)
        .match_requests(|req| req.next_token().is_none())
        .then_output(|| {
            ListClustersOutput::builder()
                .cluster_arns(format!("{ARN}:cluster/prod"))
                .next_token("clusters-2")
                .build()
        });
    let clusters_second = mock!(aws_sdk_ecs::Client::list_clusters)
        .match_requests(|req| req.next_token() == Some("clusters-2"))
        .then_output(|| {
            ListClustersOutput::builder()
                .cluster_arns(format!("{ARN}:cluster/staging"))
                .cluster_arns(format!("{ARN}:cluster/idle"))
                .build()
        });
    let services = mock!(aws_sdk_ecs::Client::list_services).then_compute_output(|req| {
        let cluster = req.cluster().unwrap().rsplit('/').next().unwrap();
        let names: &[&str] = match (cluster, req.next_token()) {
            ("prod", None) => &["web"],
            ("prod", Some(_)) => &["api"],
            ("staging", _) => &["web"],
            _ => &[],
        };
        let mut output = ListServicesOutput::builder().set_service_arns(Some(
            names
                .iter()
                .map(|name| format!("{ARN}:service/{cluster}/{name}"))
                .collect(),
        ));
        if (cluster, req.next_token()) == ("prod", None) {
            output = output.next_token("services-2");
        }
        output.build()
    });
    let describe_services =
        mock!(aws_sdk_ecs::Client::describe_services).then_compute_output(|req| {
            let cluster = req
                .cluster()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string();
            let services = req.services().iter().map(|arn| {
                match (cluster.as_str(), arn.rsplit('/').next().unwrap()) {
                    ("prod", "web") => service("web", &["web:8", "web:7"]),
                    ("prod", "api") => service("api", &["api:3"]),
                    ("staging", "web") => service("web", &["web:8"]),
                    other => panic!("no service {other:?}"),
                }
            });
            DescribeServicesOutput::builder()
                .set_services(Some(services.collect()))
                .build()
        });
    let families = mock!(aws_sdk_ecs::Client::list_task_definition_families).then_output(|| {
        ListTaskDefinitionFamiliesOutput::builder()
            .families("web")
            .families("batch")
            .build()
    });
    // Like moto, every ACTIVE revision in ascending order; ECS would give the latest alone.
    let revisions = mock!(aws_sdk_ecs::Client::list_task_definitions).then_compute_output(|req| {
        let arns: &[&str] = match req.family_prefix().unwrap() {
            "web" => &["web:7", "web:8"],
            "batch" => &["batch:11", "batch:12"],
            other => panic!("no family {other}"),
        };
        ListTaskDefinitionsOutput::builder()
            .set_task_definition_arns(Some(arns.iter().map(|a| task_definition_arn(a)).collect()))
            .build()
    });
    vec![
        clusters_first,
        clusters_second,
        services,
        describe_services,
        describe_task_definitions(),
        families,
        revisions,
    ]
}

fn client(rules: &[Rule]) -> aws_sdk_ecs::Client {
    let rules: Vec<&Rule> = rules.iter().collect();
    mock_client!(aws_sdk_ecs, RuleMode::MatchAny, rules.as_slice())
}

fn found(discovered: &[Discovered]) -> Vec<(String, String)> {
    discovered
        .iter()
        .map(|d| (d.image.replace(HOST, "HOST"), d.source.to_string()))
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(image, source)| (image.to_string(), source.to_string()))
        .collect()
}

#[tokio::test]
async fn every_service_of_every_cluster_over_pages_each_image_once() {
    let ecs = client(&account());
    let discovered = discover(&ecs, &Scope::default(), None)
        .await
        .unwrap()
        .images;
    assert_eq!(
        found(&discovered),
        pairs(&[
            (
                "HOST/docker-hub/library/nginx:1.27.2",
                "ecs-service:prod/api"
            ),
            (
                "HOST/quay/prometheus/node-exporter:v1.8.2",
                "ecs-service:prod/api"
            ),
            ("HOST/docker-hub/library/nginx:1.27", "ecs-service:prod/web"),
            (
                "public.ecr.aws/aws-observability/aws-otel-collector:v0.41.1",
                "ecs-service:prod/web"
            ),
        ]),
        "staging's web deploys nothing new; idle has no service"
    );
}

#[tokio::test]
async fn families_add_their_latest_active_revision() {
    let ecs = client(&account());
    let scope = Scope {
        families: true,
        clusters: vec!["staging".into()],
    };
    let discovered = discover(&ecs, &scope, None).await.unwrap().images;
    assert_eq!(
        found(&discovered),
        pairs(&[
            (
                "HOST/docker-hub/library/nginx:1.27.2",
                "ecs-service:staging/web"
            ),
            (
                "public.ecr.aws/aws-observability/aws-otel-collector:v0.41.1",
                "ecs-service:staging/web"
            ),
            ("HOST/docker-hub/library/alpine:3.20", "ecs-family:batch:12"),
        ])
    );
}

#[tokio::test]
async fn a_task_definition_that_cannot_be_described_is_its_own_error() {
    // web:7, which prod's web still drains, was deregistered and deleted.
    let gone = mock!(aws_sdk_ecs::Client::describe_task_definition)
        .match_requests(|req| req.task_definition().is_some_and(|t| t.ends_with("web:7")))
        .then_error(|| {
            aws_sdk_ecs::operation::describe_task_definition::DescribeTaskDefinitionError::ClientException(
                aws_sdk_ecs::types::error::ClientException::builder()
                    .message("Unable to describe task definition.")
                    .build(),
            )
        });
    let mut rules = account();
    rules.insert(0, gone);
    let ecs = client(&rules);
    let discovery = discover(&ecs, &Scope::default(), None).await.unwrap();
    let images: Vec<(String, String)> = found(&discovery.images);
    assert_eq!(images.len(), 3, "every other image is found: {images:?}");
    assert!(!images
        .iter()
        .any(|(image, _)| image.ends_with("nginx:1.27")));
    assert_eq!(discovery.failures.len(), 1);
    let text = discovery.failures[0].to_string();
    assert!(
        text.starts_with("ECS DescribeTaskDefinition failed for task definition web:7: "),
        "{text}"
    );
}

#[tokio::test]
async fn an_access_error_is_one_clear_error() {
    let denied = mock!(aws_sdk_ecs::Client::list_services).then_error(|| {
        ListServicesError::AccessDeniedException(
            AccessDeniedException::builder()
                .message("User is not authorized to perform: ecs:ListServices")
                .build(),
        )
    });
    // The first rule that matches answers: the denial comes before the account's.
    let mut rules = account();
    rules.insert(0, denied);
    let ecs = client(&rules);
    let error = discover(&ecs, &Scope::default(), None).await.unwrap_err();
    let text = error.to_string();
    assert!(
        text.starts_with("ECS ListServices failed for cluster idle: ")
            && text.contains("not authorized")
            && text.contains("ecs:ListServices")
            && text.contains("--from-ecs"),
        "{text}"
    );
}

#[tokio::test]
async fn the_listing_stops_at_the_deadline() {
    let ecs = client(&account());
    let past = Instant::now();
    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    let error = discover(&ecs, &Scope::default(), Some(past))
        .await
        .unwrap_err();
    assert_eq!(error, EcsError::Deadline);
}

#[tokio::test]
async fn a_task_definition_is_described_for_its_images() {
    let ecs = client(&[describe_task_definitions()]);
    let images = task_definition_images(&ecs, &task_definition_arn("api:3"), None)
        .await
        .unwrap();
    assert_eq!(images, images_of("api:3"));
}
