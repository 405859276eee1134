//! ecr-cache-warmer: keeps Amazon ECR pull-through caches warm.
//!
//! References are parsed like Docker does ([`reference`]), mapped onto the
//! registry's pull-through cache rules ([`rules`]) into a [`plan`], and pulled
//! through the cache. The same binary runs as a command-line tool ([`cli`]) and
//! as an AWS Lambda function ([`lambda`]).

pub mod aws;
pub mod backoff;
pub mod check;
pub mod cli;
pub mod discovery;
pub mod doctor;
pub mod duration;
pub mod ecs;
pub mod event;
pub mod fanout;
pub mod host;
pub mod lambda;
pub mod list;
pub mod message;
pub mod metrics;
pub mod outcome;
pub mod pin;
pub mod pipeline;
pub mod plan;
pub mod pulls;
pub mod reference;
pub mod retry;
pub mod rules;
pub mod s3;
pub mod selector;
#[cfg(test)]
pub(crate) mod testing;
pub mod upstream;
pub mod warm;
