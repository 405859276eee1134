//! Upstream registries, asked directly rather than through the cache: their
//! tags, so that selectors such as `nginx:~1.27` can be resolved to the tags
//! that exist, and their manifests' digests.
//!
//! [`registry`] is what is asked of an upstream, and the registry API v2
//! that answers it at the address [`endpoints`] gives, with the rule's
//! [`credential`]: [`tags`] lists a repository's tags, [`manifest`] reads a
//! manifest's digest; every request follows the rules of one session
//! (authentication, redirects, caps, retries). [`resolver`] turns the
//! selectors of a plan into the images they select.

mod challenge;
pub mod credential;
pub mod endpoints;
pub mod error;
pub mod manifest;
pub mod registry;
pub mod resolver;
mod session;
pub mod tags;
