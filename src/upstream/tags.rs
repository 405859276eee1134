//! The tags of a repository on an upstream registry (registry API v2
//! `tags/list`), following the pages its `Link` headers point to.

use std::collections::HashSet;

use reqwest::header::{HeaderMap, LINK};
use reqwest::{Method, Url};
use serde::Deserialize;

use super::error::Problem;
use super::session::{Cap, Session};

/// The name callers know the registry client by: it began as a tag lister.
pub type TagLister = super::registry::HttpRegistry;

/// A million tags at the default page size: more means a Link header that
/// never ends.
const MAX_PAGES: usize = 1000;
/// A page of 1000 tags is some 30 KiB; a registry that ignores `n` and
/// answers every tag at once gets room for a few hundred thousand.
const PAGE: Cap = Cap {
    bytes: 8 << 20,
    what: "a tags page",
};

#[derive(Deserialize)]
struct TagList {
    tags: Option<Vec<String>>,
}

struct Page {
    tags: Vec<String>,
    next: Option<Url>,
}

/// Every tag of `repository` at `base`, page after page.
pub(super) async fn list(
    session: &mut Session<'_>,
    base: &Url,
    repository: &str,
    page_size: u32,
) -> Result<Vec<String>, Problem> {
    let mut url = under(base, &format!("v2/{repository}/tags/list"))?;
    url.query_pairs_mut()
        .append_pair("n", &page_size.to_string());
    let mut seen = HashSet::new();
    let mut tags = Vec::new();
    loop {
        if seen.len() == MAX_PAGES {
            return Err(Problem::Protocol(format!(
                "the tags run over more than {MAX_PAGES} pages"
            )));
        }
        if !seen.insert(url.clone()) {
            return Err(Problem::Protocol(format!(
                "the Link header leads back to {url}, a page already listed"
            )));
        }
        let page = page(session, base, &url).await?;
        tags.extend(page.tags);
        match page.next {
            Some(next) => url = next,
            None => return Ok(tags),
        }
    }
}

async fn page(session: &mut Session<'_>, base: &Url, url: &Url) -> Result<Page, Problem> {
    let answer = session.fetch(Method::GET, url, &[], PAGE).await?;
    let answer = session.check(answer)?;
    let list: TagList = serde_json::from_slice(&answer.body).map_err(|error| {
        Problem::Protocol(format!(
            "the tag list from {} does not parse: {error}",
            answer.url
        ))
    })?;
    // After a redirect to another origin, paths are that origin's own.
    let base = session.is_own(&answer.url).then_some(base);
    let next = match next_link(&answer.headers) {
        Some(link) => Some(resolve(base, &answer.url, link)?),
        None => None,
    };
    Ok(Page {
        tags: list.tags.unwrap_or_default(),
        next,
    })
}

/// `path` under the base URL, which may have a path of its own.
pub(super) fn under(base: &Url, path: &str) -> Result<Url, Problem> {
    let url = format!("{}/{path}", base.as_str().trim_end_matches('/'));
    Url::parse(&url).map_err(|error| Problem::Invalid(format!("{url} is not a URL: {error}")))
}

/// The target of the `rel="next"` link among the Link headers.
fn next_link(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(LINK)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(next_in)
}

/// `<target>; rel="next"` among the comma-separated links of one header.
fn next_in(header: &str) -> Option<&str> {
    let mut rest = header;
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        let end = after.find('>')?;
        let target = &after[..end];
        rest = &after[end + 1..];
        let params = &rest[..rest.find('<').unwrap_or(rest.len())];
        if params.split(';').any(is_rel_next) {
            return Some(target);
        }
    }
    None
}

fn is_rel_next(param: &str) -> bool {
    let Some((key, value)) = param.split_once('=') else {
        return false;
    };
    let value = value.trim().trim_end_matches(',').trim().trim_matches('"');
    key.trim().eq_ignore_ascii_case("rel")
        && value
            .split_whitespace()
            .any(|rel| rel.eq_ignore_ascii_case("next"))
}

/// Where a Link target leads: relative to the URL that answered it. A
/// registry behind a proxy that serves it under a path (a base such as
/// `http://proxy/upstream/quay.io`) still links to `/v2/…`, which is taken
/// under that path, when the page came from the registry's own origin
/// (`base`). The next page must be on the same origin as the one before.
fn resolve(base: Option<&Url>, answered: &Url, target: &str) -> Result<Url, Problem> {
    let prefixed = base.filter(|base| base.path() != "/" && target.starts_with("/v2/"));
    let url = if let Some(base) = prefixed {
        under(base, &target[1..])
    } else {
        answered.join(target).map_err(|error| {
            Problem::Protocol(format!("the Link target {target:?} is not a URL: {error}"))
        })
    }?;
    if url.origin() != answered.origin() {
        return Err(Problem::Protocol(format!(
            "the Link header of {answered} leads to another origin, {url}; paging stops rather than send the credential there"
        )));
    }
    Ok(url)
}

#[cfg(test)]
mod tests;
