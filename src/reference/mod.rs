//! Image references, parsed and normalized with the rules Docker applies
//! (`ParseNormalizedNamed` of the distribution/reference package), so that the
//! full form printed here is exactly what `docker pull` would resolve.
//!
//! The parser is hand-written rather than a regular expression so that it runs
//! in linear time on untrusted input and can say which part is wrong.

use std::fmt;

use thiserror::Error;

use crate::host::{is_docker_hub_host, DOCKER_HUB_DOMAIN, LEGACY_DOCKER_HUB_DOMAIN};

const OFFICIAL_REPOSITORY_PREFIX: &str = "library/";
const LOCALHOST: &str = "localhost";
const NAME_MAX_LEN: usize = 255;
const TAG_MAX_LEN: usize = 128;

/// A normalized image reference: `registry/repository[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

/// Why a reference does not parse. Each variant names the offending part.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReferenceError {
    #[error("empty reference")]
    Empty,
    #[error(
        "invalid repository name ({0}): 64-character hexadecimal strings are image IDs, not names"
    )]
    Identifier(String),
    #[error("repository name must be lowercase: {0}")]
    Uppercase(String),
    #[error("invalid registry host: {0}")]
    Registry(String),
    #[error("invalid repository path component {component:?} in {path}: use lowercase letters and digits, separated by '.', '_', '__' or dashes")]
    PathComponent { component: String, path: String },
    #[error("repository name must not be more than {NAME_MAX_LEN} characters: {0}")]
    NameTooLong(String),
    #[error("invalid tag {0:?}: a tag is 1 to {TAG_MAX_LEN} letters, digits, '_', '.' or '-', not starting with '.' or '-'")]
    Tag(String),
    #[error("invalid digest {0:?}: {1}")]
    Digest(String, &'static str),
    #[error("invalid reference format: {0}")]
    Format(String),
}

impl Reference {
    /// Parses a reference as people write it and normalizes it like Docker.
    pub fn parse_normalized(input: &str) -> Result<Reference, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if is_identifier(input) {
            return Err(ReferenceError::Identifier(input.to_string()));
        }
        let (domain, remainder) = split_docker_domain(input);
        let remote = remainder.split(':').next().unwrap_or_default();
        if remote.to_lowercase() != remote {
            return Err(ReferenceError::Uppercase(remote.to_string()));
        }
        parse_full(&domain, &remainder)
    }

    /// The registry host, with its port when written (`docker.io`, `localhost:5000`).
    /// Empty when Docker reads the whole name as a path (no registry part).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path within the registry (`library/nginx`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// `registry/repository`, as Docker prints a name.
    pub fn name(&self) -> String {
        if self.registry.is_empty() {
            self.repository.clone()
        } else {
            format!("{}/{}", self.registry, self.repository)
        }
    }

    pub fn is_docker_hub(&self) -> bool {
        is_docker_hub_host(&self.registry)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// A 64-character lowercase hexadecimal string: an image ID, refused as a name.
fn is_identifier(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Docker's choice of registry: the first component is a registry when it has
/// a '.' or ':', is `localhost`, or has an uppercase letter; otherwise the
/// name is on Docker Hub, where single-component names are official images.
fn split_docker_domain(name: &str) -> (String, String) {
    let (mut domain, mut remainder) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == LOCALHOST
                || first.to_lowercase() != first =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DOCKER_HUB_DOMAIN.to_string(), name.to_string()),
    };
    if domain == LEGACY_DOCKER_HUB_DOMAIN {
        domain = DOCKER_HUB_DOMAIN.to_string();
    }
    if domain == DOCKER_HUB_DOMAIN && !remainder.contains('/') {
        remainder = format!("{OFFICIAL_REPOSITORY_PREFIX}{remainder}");
    }
    (domain, remainder)
}

/// Parses `domain/remainder` with the strict grammar
/// `[host[:port]/]path[:tag][@digest]`.
fn parse_full(domain: &str, remainder: &str) -> Result<Reference, ReferenceError> {
    let full = format!("{domain}/{remainder}");
    let (rest, digest) = match full.split_once('@') {
        Some((rest, digest)) => (rest, Some(parse_digest(digest)?)),
        None => (full.as_str(), None),
    };
    // A ':' after the last '/' can only start a tag: ports come before a '/'.
    let (name, tag) = match rest.rfind(':') {
        Some(colon) if rest[colon..].find('/').is_none() => {
            let tag = &rest[colon + 1..];
            if !is_tag(tag) {
                return Err(ReferenceError::Tag(tag.to_string()));
            }
            (&rest[..colon], Some(tag.to_string()))
        }
        _ => (rest, None),
    };
    let (registry, repository) = split_name(name)?;
    if name.len() > NAME_MAX_LEN {
        return Err(ReferenceError::NameTooLong(name.to_string()));
    }
    Ok(Reference {
        registry: registry.to_string(),
        repository: repository.to_string(),
        tag,
        digest,
    })
}

/// Splits a name into registry and path. Like the reference grammar, a valid
/// host before the first '/' is the registry; failing that, the whole name is
/// tried as a path with no registry.
fn split_name(name: &str) -> Result<(&str, &str), ReferenceError> {
    if let Some((host, path)) = name.split_once('/') {
        if is_host_and_port(host) && check_path(path).is_ok() {
            return Ok((host, path));
        }
        if check_path(name).is_ok() {
            return Ok(("", name));
        }
        if !is_host_and_port(host) {
            return Err(ReferenceError::Registry(host.to_string()));
        }
        check_path(path)?;
    }
    check_path(name)?;
    Ok(("", name))
}

/// `component(/component)*`, each component `[a-z0-9]+` joined by
/// `.`, `_`, `__` or a run of `-`.
fn check_path(path: &str) -> Result<(), ReferenceError> {
    if path.is_empty() {
        return Err(ReferenceError::Format(
            "repository name must have at least one component".to_string(),
        ));
    }
    for component in path.split('/') {
        if !is_path_component(component) {
            return Err(ReferenceError::PathComponent {
                component: component.to_string(),
                path: path.to_string(),
            });
        }
    }
    Ok(())
}

fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let is_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !is_alnum(bytes[0]) || !is_alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if is_alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !is_alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `host[:port]` where host is a dotted domain name or a bracketed IPv6 literal.
pub(crate) fn is_host_and_port(s: &str) -> bool {
    let (host, port) = if let Some(inner) = s.strip_prefix('[') {
        let Some(end) = inner.find(']') else {
            return false;
        };
        let literal = &inner[..end];
        if literal.is_empty() || !literal.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        (None, &inner[end + 1..])
    } else {
        match s.find(':') {
            Some(colon) => (Some(&s[..colon]), &s[colon..]),
            None => (Some(s), ""),
        }
    };
    let host_ok = host.is_none_or(|h| h.split('.').all(is_domain_component));
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

fn is_domain_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    !bytes.is_empty()
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
fn is_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= TAG_MAX_LEN
        && word(bytes[0])
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
}

/// `algorithm:hex`, where Docker knows sha256, sha384 and sha512 and wants
/// exactly their length of lowercase hex.
fn parse_digest(digest: &str) -> Result<String, ReferenceError> {
    let invalid = |why| Err(ReferenceError::Digest(digest.to_string(), why));
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return invalid("expected algorithm:hex, e.g. sha256:<64 hex digits>");
    };
    if !is_digest_algorithm(algorithm)
        || hex.len() < 32
        || !hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return invalid("expected algorithm:hex, e.g. sha256:<64 hex digits>");
    }
    let expected_len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return invalid("unsupported digest algorithm: use sha256, sha384 or sha512"),
    };
    if hex.len() != expected_len {
        return invalid(
            "wrong number of hex digits for the algorithm (sha256: 64, sha384: 96, sha512: 128)",
        );
    }
    if hex.bytes().any(|b| b.is_ascii_uppercase()) {
        return invalid("hex digits must be lowercase");
    }
    Ok(digest.to_string())
}

/// `[A-Za-z][A-Za-z0-9]*` components joined by `+`, `.`, `_` or `-`.
fn is_digest_algorithm(algorithm: &str) -> bool {
    algorithm.split(['+', '.', '_', '-']).all(|component| {
        let bytes = component.as_bytes();
        !bytes.is_empty()
            && bytes[0].is_ascii_alphabetic()
            && bytes.iter().all(|b| b.is_ascii_alphanumeric())
    })
}

#[cfg(test)]
mod tests;
