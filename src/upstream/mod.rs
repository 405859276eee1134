//! Upstream registries, asked directly rather than through the cache: their
//! tags, so that selectors such as `nginx:~1.27` can be resolved to the tags
//! that exist.
//!
//! [`endpoints`] says where each registry's API is reached; [`tags`] lists a
//! repository's tags there, with the rule's [`credential`]; [`resolver`]
//! turns the selectors of a plan into the images they select.

mod challenge;
pub mod credential;
pub mod endpoints;
pub mod resolver;
pub mod tags;

#[cfg(test)]
mod test_server;
