//! The one way from entries to a report, for the command line and for every
//! trigger of the function alike: plan the entries onto the rules, add what
//! ECS runs, list the selectors' tags upstream, set apart what is not warmed
//! through the cache, and warm the rest. A caller decides only where the
//! entries come from and what becomes of what is left.

use std::collections::BTreeMap;

use crate::ecs::{self, Discovered};
use crate::list::ListEntry;
use crate::pin;
use crate::plan::PlannedImage;
use crate::pulls;
use crate::rules::Rules;
use crate::upstream::resolver::Resolver;
use crate::warm::settings::WarmSettings;
use crate::warm::{self, Report};

/// What a warm needs, made once and lent to every run.
#[derive(Clone, Copy)]
pub struct Pipeline<'a> {
    pub rules: &'a Rules,
    pub resolver: &'a Resolver,
    pub settings: &'a WarmSettings,
}

/// One part of the work, kept apart to be answered for apart: the list of a
/// schedule or of the command line, or one message of an SQS batch.
#[derive(Debug, Clone, Default)]
pub struct Parcel {
    pub entries: Vec<ListEntry>,
    /// Images that ECS runs, warmed unless the entries name them already.
    pub discovered: Vec<Discovered>,
    /// The selector that selected an image earlier, by image: an image that
    /// comes back through the queue still names it.
    pub selectors: BTreeMap<String, String>,
}

/// The images to warm, each with the parcel it came from, and those set
/// apart: ECS pulls them without a pull-through cache.
#[derive(Debug, Default)]
pub struct Work {
    pub images: Vec<PlannedImage>,
    /// The position of each image's parcel, image by image.
    pub parcels: Vec<usize>,
    pub not_warmed: Vec<PlannedImage>,
}

impl Parcel {
    pub fn of(entries: Vec<ListEntry>) -> Parcel {
        Parcel {
            entries,
            ..Parcel::default()
        }
    }
}

impl Pipeline<'_> {
    /// Plans a parcel: each entry onto the rules, then the images of ECS that
    /// the entries do not name. Selectors are left unresolved.
    pub fn plan(&self, parcel: Parcel) -> Vec<PlannedImage> {
        let mut planned: Vec<PlannedImage> = parcel
            .entries
            .into_iter()
            .map(|entry| PlannedImage::from_entry(entry, self.rules))
            .collect();
        let from_ecs = ecs::plan(parcel.discovered, self.rules, &planned);
        planned.extend(from_ecs);
        for image in &mut planned {
            if let Some(selector) = parcel.selectors.get(&image.input) {
                image.selector.get_or_insert_with(|| selector.clone());
            }
        }
        planned
    }

    /// Lists the selectors of every plan upstream (a repository that several
    /// name, once) and puts the images they select in their place.
    pub async fn resolve(&self, plans: Vec<Vec<PlannedImage>>) -> Vec<Vec<PlannedImage>> {
        self.resolver
            .resolve_each(plans, self.rules, self.settings.deadline)
            .await
    }

    /// The resolved plans as one warm, with what is not warmed set apart.
    pub fn work(plans: Vec<Vec<PlannedImage>>) -> Work {
        let mut work = Work::default();
        for (position, plan) in plans.into_iter().enumerate() {
            for image in plan {
                match image.not_warmed {
                    Some(_) => work.not_warmed.push(image),
                    None => {
                        work.images.push(image);
                        work.parcels.push(position);
                    }
                }
            }
        }
        work
    }

    /// Plans and resolves the parcels, ready to warm.
    pub async fn prepare(&self, parcels: Vec<Parcel>) -> Work {
        let plans = parcels
            .into_iter()
            .map(|parcel| self.plan(parcel))
            .collect();
        Pipeline::work(self.resolve(plans).await)
    }

    /// Warms the images through `ecr`: a digest the cache does not hold by
    /// the tag that holds it upstream, and no more imports through Docker Hub
    /// than its pull budget allows; `progress` hears how many are done.
    pub async fn warm(
        &self,
        ecr: &aws_sdk_ecr::Client,
        images: &[PlannedImage],
        progress: &(dyn Fn(usize) + Sync),
    ) -> Report {
        let settings = self.settings;
        let images = pin::by_tags(
            ecr,
            self.resolver,
            self.rules,
            images,
            settings.digest_search,
            settings.deadline,
        )
        .await;
        let (images, pulls_left) =
            pulls::hold_back(ecr, self.resolver, self.rules, images, settings).await;
        let mut report = warm::warm(ecr, &images, settings, progress).await;
        report.pulls_left = pulls_left;
        report
    }
}
