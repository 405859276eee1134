//! The images that ECS runs: every cluster's services (their deployments' and
//! task sets' task definitions) and, on request, the latest ACTIVE revision of
//! every task definition family. Each image once, with the first place it was
//! seen, in a stable order: clusters and services by name, then families.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Instant;

use aws_sdk_ecs::types::{SortOrder, TaskDefinitionFamilyStatus, TaskDefinitionStatus};
use futures_util::stream::{self, StreamExt, TryStreamExt};

use super::error::EcsError;
use crate::plan::Source;

/// Task definitions and clusters described at once: ECS throttles its list and
/// describe calls per account, and deployment tools share that budget.
const CONCURRENCY: usize = 4;

/// The last part of an ECS ARN (`arn:aws:ecs:…:cluster/prod` → `prod`), or the
/// name itself.
fn short_name(arn_or_name: &str) -> &str {
    arn_or_name.rsplit('/').next().unwrap_or(arn_or_name)
}

/// What to look at in ECS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Also the latest ACTIVE revision of every task definition family.
    pub families: bool,
    /// Only these clusters (names or ARNs); empty: every cluster of the Region.
    pub clusters: Vec<String>,
}

/// A container image as a task definition writes it, and where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    pub image: String,
    pub source: Source,
}

/// What ECS runs, and the task definitions that could not be read.
#[derive(Debug, Default)]
pub struct Discovery {
    pub images: Vec<Discovered>,
    /// One per task definition that could not be described.
    pub failures: Vec<EcsError>,
}

/// A service and the task definitions it runs or is deploying.
struct ServiceUse {
    cluster: String,
    service: String,
    task_definitions: Vec<String>,
}

/// A described task definition: its family, revision and images.
#[derive(Debug, Clone)]
struct TaskDefinition {
    family: String,
    revision: i32,
    images: Vec<String>,
}

/// Lists the images of `scope`, stopping at `deadline`.
pub async fn discover(
    ecs: &aws_sdk_ecs::Client,
    scope: &Scope,
    deadline: Option<Instant>,
) -> Result<Discovery, EcsError> {
    within(deadline, discover_all(ecs, scope)).await
}

/// The images of one task definition (an ARN, or `family:revision`).
pub async fn task_definition_images(
    ecs: &aws_sdk_ecs::Client,
    task_definition: &str,
    deadline: Option<Instant>,
) -> Result<Vec<String>, EcsError> {
    let described = within(deadline, describe(ecs, task_definition.to_string())).await?;
    Ok(described.1.images)
}

async fn within<T>(
    deadline: Option<Instant>,
    calls: impl std::future::Future<Output = Result<T, EcsError>>,
) -> Result<T, EcsError> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline.into(), calls)
            .await
            .map_err(|_| EcsError::Deadline)?,
        None => calls.await,
    }
}

async fn discover_all(ecs: &aws_sdk_ecs::Client, scope: &Scope) -> Result<Discovery, EcsError> {
    let mut clusters = match scope.clusters.is_empty() {
        true => list_clusters(ecs).await?,
        false => scope.clusters.clone(),
    };
    clusters.sort_by(|a, b| short_name(a).cmp(short_name(b)));
    let services: Vec<ServiceUse> = stream::iter(clusters)
        .map(|cluster| cluster_services(ecs, cluster))
        .buffered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?
        .into_iter()
        .flatten()
        .collect();

    let mut wanted: BTreeSet<String> = services
        .iter()
        .flat_map(|service| service.task_definitions.iter().cloned())
        .collect();
    let families = match scope.families {
        true => latest_revisions(ecs).await?,
        false => Vec::new(),
    };
    wanted.extend(families.iter().cloned());
    // A revision deregistered while a deployment drains cannot be described:
    // that is its own error, and the images of every other one are still found.
    let results: Vec<Result<(String, TaskDefinition), EcsError>> = stream::iter(wanted)
        .map(|arn| describe(ecs, arn))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut described: HashMap<String, TaskDefinition> = HashMap::new();
    let mut failures = Vec::new();
    for result in results {
        match result {
            Ok((arn, definition)) => {
                described.insert(arn, definition);
            }
            Err(error) => failures.push(error),
        }
    }
    failures.sort_by_key(ToString::to_string);

    let mut found = Vec::new();
    let mut seen = HashSet::new();
    let mut add = |images: &[String], source: &Source| {
        for image in images {
            if seen.insert(image.clone()) {
                found.push(Discovered {
                    image: image.clone(),
                    source: source.clone(),
                });
            }
        }
    };
    for service in &services {
        let source = Source::EcsService {
            cluster: service.cluster.clone(),
            service: service.service.clone(),
        };
        for arn in &service.task_definitions {
            if let Some(definition) = described.get(arn) {
                add(&definition.images, &source);
            }
        }
    }
    for arn in &families {
        let Some(definition) = described.get(arn) else {
            continue;
        };
        let source = Source::EcsFamily {
            family: definition.family.clone(),
            revision: definition.revision,
        };
        add(&definition.images, &source);
    }
    Ok(Discovery {
        images: found,
        failures,
    })
}

async fn list_clusters(ecs: &aws_sdk_ecs::Client) -> Result<Vec<String>, EcsError> {
    ecs.list_clusters()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|error| EcsError::call("ListClusters", "the account", &error))
}

/// The services of a cluster, by name, with the task definitions they deploy.
async fn cluster_services(
    ecs: &aws_sdk_ecs::Client,
    cluster: String,
) -> Result<Vec<ServiceUse>, EcsError> {
    let subject = format!("cluster {}", short_name(&cluster));
    let arns: Vec<String> = ecs
        .list_services()
        .cluster(&cluster)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|error| EcsError::call("ListServices", &subject, &error))?;
    let mut services = Vec::new();
    // DescribeServices takes at most 10 services per call.
    for batch in arns.chunks(10) {
        let output = ecs
            .describe_services()
            .cluster(&cluster)
            .set_services(Some(batch.to_vec()))
            .send()
            .await
            .map_err(|error| EcsError::call("DescribeServices", &subject, &error))?;
        for failure in output.failures() {
            // A service deleted since it was listed runs nothing.
            tracing::debug!(
                arn = failure.arn(),
                reason = failure.reason(),
                "service not described"
            );
        }
        for service in output.services() {
            // Every deployment (the primary and those still draining or starting)
            // and task set (CodeDeploy, external controllers) runs its revision.
            let task_definitions = service
                .deployments()
                .iter()
                .filter_map(|deployment| deployment.task_definition())
                .chain(
                    service
                        .task_sets()
                        .iter()
                        .filter_map(|set| set.task_definition()),
                )
                .chain(service.task_definition())
                .map(str::to_string)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            services.push(ServiceUse {
                cluster: short_name(&cluster).to_string(),
                service: service.service_name().unwrap_or_default().to_string(),
                task_definitions,
            });
        }
    }
    services.sort_by(|a, b| a.service.cmp(&b.service));
    Ok(services)
}

/// The latest ACTIVE revision of every family that has one, by family name.
async fn latest_revisions(ecs: &aws_sdk_ecs::Client) -> Result<Vec<String>, EcsError> {
    let mut families: Vec<String> = ecs
        .list_task_definition_families()
        .status(TaskDefinitionFamilyStatus::Active)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|error| EcsError::call("ListTaskDefinitionFamilies", "the account", &error))?;
    families.sort();
    let latest: Vec<Option<String>> = stream::iter(families)
        .map(|family| async move {
            let output = ecs
                .list_task_definitions()
                .family_prefix(&family)
                .status(TaskDefinitionStatus::Active)
                .sort(SortOrder::Desc)
                .max_results(1)
                .send()
                .await
                .map_err(|error| {
                    EcsError::call("ListTaskDefinitions", &format!("family {family}"), &error)
                })?;
            // The highest revision of the page, whatever order the endpoint keeps.
            Ok::<_, EcsError>(
                output
                    .task_definition_arns()
                    .iter()
                    .max_by_key(|arn| revision_of(arn))
                    .cloned(),
            )
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    Ok(latest.into_iter().flatten().collect())
}

async fn describe(
    ecs: &aws_sdk_ecs::Client,
    arn: String,
) -> Result<(String, TaskDefinition), EcsError> {
    let output = ecs
        .describe_task_definition()
        .task_definition(&arn)
        .send()
        .await
        .map_err(|error| {
            EcsError::call(
                "DescribeTaskDefinition",
                &format!("task definition {}", short_name(&arn)),
                &error,
            )
        })?;
    let definition = output.task_definition();
    let images = definition
        .map(|d| d.container_definitions())
        .unwrap_or_default()
        .iter()
        .filter_map(|container| container.image())
        .map(str::to_string)
        .collect();
    let described = TaskDefinition {
        family: definition
            .and_then(|d| d.family())
            .unwrap_or_default()
            .to_string(),
        revision: definition.map_or(0, |d| d.revision()),
        images,
    };
    Ok((arn, described))
}

/// The revision of `…:task-definition/family:REVISION`.
fn revision_of(arn: &str) -> i64 {
    arn.rsplit(':')
        .next()
        .and_then(|revision| revision.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
