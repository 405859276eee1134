//! What the account's ECS runs or is about to run: the container images of the
//! task definitions its services deploy, and of the latest revision of each
//! family ([`discovery`]); and the images named by ECS events: a task
//! definition just registered, a task that could not pull its image ([`events`]).

mod discovery;
mod error;
pub mod events;

use std::collections::HashSet;

use crate::plan::PlannedImage;
use crate::rules::Rules;

pub use discovery::{discover, task_definition_images, Discovered, Discovery, Scope};
pub use error::EcsError;

/// The discovered images as ECS pulls them ([`PlannedImage::pulled_by_ecs`]),
/// each once, leaving out those that `listed` warms already.
pub fn plan(
    discovered: Vec<Discovered>,
    rules: &Rules,
    listed: &[PlannedImage],
) -> Vec<PlannedImage> {
    let mut seen: HashSet<String> = listed.iter().map(same_pull).collect();
    discovered
        .into_iter()
        .map(|found| PlannedImage::pulled_by_ecs(&found.image, found.source, rules))
        .filter(|image| seen.insert(same_pull(image)))
        .collect()
}

/// What makes two entries the same pull: the cache repository and the tag or
/// digest, however the reference was written (`nginx:1.27` on the list and
/// `<registry>/docker-hub/library/nginx:1.27` in a task definition).
fn same_pull(image: &PlannedImage) -> String {
    match (&image.target, &image.reference) {
        (Some(target), Some(reference)) => format!(
            "{}:{}@{}",
            target.cache_repository,
            reference.tag().unwrap_or_default(),
            reference.digest().unwrap_or_default()
        ),
        (None, Some(reference)) => reference.to_string(),
        _ => image.input.clone(),
    }
}
