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
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{TestCaseError, TestRunner};
    use std::cell::Cell;

    const SHA256: &str = "sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa";

    fn normalized(input: &str) -> String {
        match Reference::parse_normalized(input) {
            Ok(reference) => reference.to_string(),
            Err(error) => panic!("{input:?} should parse: {error}"),
        }
    }

    #[test]
    fn normalizes_like_docker() {
        let sha384 = format!("sha384:{}", "a".repeat(96));
        let sha512 = format!("sha512:{}", "b".repeat(128));
        let long_tag = "t".repeat(128);
        let cases: Vec<(String, String)> = vec![
            ("nginx", "docker.io/library/nginx"),
            ("nginx:1.27", "docker.io/library/nginx:1.27"),
            ("library/nginx", "docker.io/library/nginx"),
            ("docker.io/nginx", "docker.io/library/nginx"),
            ("docker.io/library/nginx", "docker.io/library/nginx"),
            ("index.docker.io/nginx", "docker.io/library/nginx"),
            ("index.docker.io/bitnami/redis:7", "docker.io/bitnami/redis:7"),
            ("registry-1.docker.io/library/nginx", "registry-1.docker.io/library/nginx"),
            ("bitnami/redis", "docker.io/bitnami/redis"),
            ("library/foo/bar", "docker.io/library/foo/bar"),
            ("test_com/foo", "docker.io/test_com/foo"),
            ("public.ecr.aws/docker/library/nginx:1.21.4", "public.ecr.aws/docker/library/nginx:1.21.4"),
            ("quay.io/prometheus/node-exporter:v1.8.2", "quay.io/prometheus/node-exporter:v1.8.2"),
            ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
            ("localhost/foo", "localhost/foo"),
            ("localhost:5000/foo/bar:1", "localhost:5000/foo/bar:1"),
            ("127.0.0.1:5000/debian", "127.0.0.1:5000/debian"),
            ("[::1]:5000/foo:tag", "[::1]:5000/foo:tag"),
            ("[2001:db8::1]/foo", "[2001:db8::1]/foo"),
            ("xn--n3h.com:18080/foo", "xn--n3h.com:18080/foo"),
            ("Example.COM/foo", "Example.COM/foo"),
            ("Docker/docker", "Docker/docker"),
            ("a_b.c/foo", "a_b.c/foo"),
            ("docker-rules/docker", "docker.io/docker-rules/docker"),
            ("docker---rules/docker", "docker.io/docker---rules/docker"),
            ("dock__er/docker", "docker.io/dock__er/docker"),
            ("d/docker", "docker.io/d/docker"),
            ("busybox:Latest_v1.0-rc", "docker.io/library/busybox:Latest_v1.0-rc"),
            ("thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", "docker.io/library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev"),
            ("docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a", "docker.io/library/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .chain([
            (format!("busybox@{SHA256}"), format!("docker.io/library/busybox@{SHA256}")),
            (format!("busybox:latest@{SHA256}"), format!("docker.io/library/busybox:latest@{SHA256}")),
            (format!("quay.io/a/b@{sha384}"), format!("quay.io/a/b@{sha384}")),
            (format!("quay.io/a/b:x@{sha512}"), format!("quay.io/a/b:x@{sha512}")),
            (format!("nginx:{long_tag}"), format!("docker.io/library/nginx:{long_tag}")),
        ])
        .collect();
        for (input, expected) in cases {
            assert_eq!(normalized(&input), expected, "input {input:?}");
        }
    }

    #[test]
    fn splits_registry_repository_tag_and_digest() {
        let r =
            Reference::parse_normalized(&format!("localhost:5000/team/app:1.0@{SHA256}")).unwrap();
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository(), "team/app");
        assert_eq!(r.tag(), Some("1.0"));
        assert_eq!(r.digest(), Some(SHA256));

        let r = Reference::parse_normalized("nginx").unwrap();
        assert_eq!(
            (r.registry(), r.repository(), r.tag(), r.digest()),
            ("docker.io", "library/nginx", None, None)
        );
        assert!(r.is_docker_hub());
    }

    #[test]
    fn refuses_what_docker_refuses_and_names_the_part() {
        let name_256 = format!(
            "docker.io/library/{}",
            "a".repeat(256 - "docker.io/library/".len())
        );
        let name_255 = format!(
            "docker.io/library/{}",
            "a".repeat(255 - "docker.io/library/".len())
        );
        assert!(Reference::parse_normalized(&name_255).is_ok());
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "empty reference"),
            (
                "docker/Docker".into(),
                "repository name must be lowercase: docker/Docker",
            ),
            (
                "docker.io/docker/Docker".into(),
                "repository name must be lowercase: docker/Docker",
            ),
            (
                "Nginx".into(),
                "repository name must be lowercase: library/Nginx",
            ),
            (
                "https://github.com/docker/docker".into(),
                "invalid registry host: https:",
            ),
            ("-docker".into(), "\"-docker\""),
            ("-docker/docker".into(), "\"-docker\""),
            (
                "-docker.io/docker/docker".into(),
                "invalid registry host: -docker.io",
            ),
            ("docker-/docker".into(), "\"docker-\""),
            ("docker///docker".into(), "\"\""),
            ("docker.io/docker///docker".into(), "\"\""),
            ("____/____".into(), "\"____\""),
            ("_docker/_docker".into(), "\"_docker\""),
            ("dock..er/docker".into(), "invalid registry host: dock..er"),
            ("dock_.er/docker".into(), "invalid registry host: dock_.er"),
            ("dock-.er/docker".into(), "invalid registry host: dock-.er"),
            (
                "docker/".into(),
                "invalid repository path component \"\" in docker/",
            ),
            (
                "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a".into(),
                "64-character hexadecimal",
            ),
            (name_256, "must not be more than 255 characters"),
            ("nginx:".into(), "invalid tag \"\""),
            ("nginx:-x".into(), "invalid tag \"-x\""),
            (format!("nginx:{}", "t".repeat(129)), "invalid tag"),
            ("nginx:a b".into(), "invalid tag"),
            (
                "localhost:50a/foo".into(),
                "invalid registry host: localhost:50a",
            ),
            ("[::1/foo".into(), "invalid registry host: [::1"),
            ("[zz::1]/foo".into(), "invalid registry host: [zz::1]"),
            ("nginx@sha256".into(), "expected algorithm:hex"),
            ("nginx@sha256:abc".into(), "expected algorithm:hex"),
            (
                format!("nginx@sha256:{}", "a".repeat(63)),
                "wrong number of hex digits",
            ),
            (
                format!("nginx@sha256:{}", "a".repeat(65)),
                "wrong number of hex digits",
            ),
            (
                format!("nginx@sha256:{}", "A".repeat(64)),
                "must be lowercase",
            ),
            (
                format!("nginx@md5:{}", "a".repeat(32)),
                "unsupported digest algorithm",
            ),
            (
                format!("nginx@sha256:{}", "g".repeat(64)),
                "expected algorithm:hex",
            ),
            (format!("nginx@{SHA256}@{SHA256}"), "invalid digest"),
            ("nginx:1.27:2".into(), "invalid"),
            ("nginx 1.27".into(), "\"nginx 1.27\""),
        ];
        for (input, expected) in cases {
            let error = Reference::parse_normalized(&input)
                .expect_err(&input)
                .to_string();
            assert!(
                error.contains(expected),
                "input {input:?}: {error:?} should contain {expected:?}"
            );
        }
    }

    /// One path component of Docker's grammar: lowercase letters and digits
    /// joined by '.', '_', '__' or a run of dashes.
    const COMPONENT: &str = "[a-z0-9]{1,8}(([._]|__|-{1,3})[a-z0-9]{1,8}){0,2}";

    /// A reference written by Docker's grammar, kept in parts so that the
    /// parse can be checked against them.
    #[derive(Debug, Clone)]
    struct Generated {
        host: Option<String>,
        path: String,
        tag: Option<String>,
        digest: Option<String>,
    }

    impl Generated {
        fn text(&self) -> String {
            let mut text = match &self.host {
                Some(host) => format!("{host}/{}", self.path),
                None => self.path.clone(),
            };
            if let Some(tag) = &self.tag {
                text = format!("{text}:{tag}");
            }
            if let Some(digest) = &self.digest {
                text = format!("{text}@{digest}");
            }
            text
        }

        /// The parts Docker keeps. A reference without a host is left to
        /// Docker's choice of registry, which the unit tests above pin.
        fn check_parts(&self, parsed: &Reference) -> Result<(), TestCaseError> {
            prop_assert_eq!(parsed.tag(), self.tag.as_deref());
            prop_assert_eq!(parsed.digest(), self.digest.as_deref());
            if let Some(host) = &self.host {
                let hub = matches!(host.as_str(), DOCKER_HUB_DOMAIN | LEGACY_DOCKER_HUB_DOMAIN);
                let (registry, repository) = match hub {
                    true if !self.path.contains('/') => {
                        (DOCKER_HUB_DOMAIN, format!("library/{}", self.path))
                    }
                    true => (DOCKER_HUB_DOMAIN, self.path.clone()),
                    false => (host.as_str(), self.path.clone()),
                };
                prop_assert_eq!(parsed.registry(), registry);
                prop_assert_eq!(parsed.repository(), repository);
            }
            Ok(())
        }
    }

    /// Hosts, with an optional port, of the kinds Docker reads as a registry:
    /// the first part of a name is a host only when it has a '.' or ':', is
    /// localhost or has an uppercase letter (so every IPv6 literal has a ':').
    fn host() -> impl Strategy<Value = String> {
        let name = prop_oneof![
            "localhost|docker\\.io|index\\.docker\\.io|registry-1\\.docker\\.io",
            "[0-9]{12}\\.dkr\\.ecr\\.[a-z]{2}-[a-z]{4,9}-[1-3]\\.amazonaws\\.com",
            "[a-zA-Z0-9]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?(\\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?){1,3}",
            "[a-z0-9]{0,4}[A-Z][a-zA-Z0-9]{0,4}",
            "\\[[0-9a-fA-F]{0,4}(:[0-9a-fA-F]{0,4}){1,7}\\]",
        ];
        (name, prop::option::of("[0-9]{1,5}")).prop_map(|(name, port)| match port {
            Some(port) => format!("{name}:{port}"),
            None => name,
        })
    }

    fn generated() -> impl Strategy<Value = Generated> {
        let path = prop::string::string_regex(&format!("{COMPONENT}(/{COMPONENT}){{0,3}}"))
            .expect("a valid regular expression");
        (
            prop::option::of(host()),
            path,
            prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"),
            prop::option::of("sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}"),
        )
            .prop_map(|(host, path, tag, digest)| Generated {
                host,
                path,
                tag,
                digest,
            })
    }

    /// One character of a valid reference replaced, one time in ten: near
    /// misses reach the error paths that random strings seldom get past.
    fn near_miss() -> impl Strategy<Value = Option<(prop::sample::Index, char)>> {
        let replacement = prop::sample::select(vec!['A', ':', '/', '@', '.', '-', '_', ' ', 'é']);
        prop::option::weighted(0.1, (any::<prop::sample::Index>(), replacement))
    }

    fn with_near_miss(text: String, miss: Option<(prop::sample::Index, char)>) -> String {
        let Some((at, replacement)) = miss else {
            return text;
        };
        let mut chars: Vec<char> = text.chars().collect();
        let at = at.index(chars.len());
        chars[at] = replacement;
        chars.into_iter().collect()
    }

    #[test]
    fn generated_references_parse_and_normalizing_is_idempotent() {
        let config = ProptestConfig {
            cases: 2000,
            failure_persistence: None,
            ..ProptestConfig::default()
        };
        let (cases, parsed) = (Cell::new(0u32), Cell::new(0u32));
        let result =
            TestRunner::new(config).run(&(generated(), near_miss()), |(generated, miss)| {
                let input = with_near_miss(generated.text(), miss);
                cases.set(cases.get() + 1);
                let result = Reference::parse_normalized(&input);
                if miss.is_none() {
                    match &result {
                        Ok(reference) => generated.check_parts(reference)?,
                        Err(error) => prop_assert!(false, "{:?} should parse: {}", input, error),
                    }
                }
                if let Ok(once) = result {
                    parsed.set(parsed.get() + 1);
                    let normalized = once.to_string();
                    prop_assert_eq!(
                        Reference::parse_normalized(&normalized),
                        Ok(once),
                        "{:?} normalizes to {:?}, which does not parse back to itself",
                        input,
                        normalized
                    );
                }
                Ok(())
            });
        if let Err(error) = result {
            panic!("{error}");
        }
        // Guards the property itself: if the strategy drifted into input that
        // mostly fails to parse, idempotence would be checked on nothing.
        assert!(
            parsed.get() * 10 >= cases.get() * 8,
            "only {} of {} generated references parse",
            parsed.get(),
            cases.get()
        );
    }

    proptest! {
        #[test]
        fn parsing_never_panics(input in "\\PC{0,300}") {
            let _ = Reference::parse_normalized(&input);
        }

        #[test]
        fn parsing_reference_shaped_input_never_panics(input in "[a-zA-Z0-9._:/@\\[\\]-]{0,120}") {
            let _ = Reference::parse_normalized(&input);
        }
    }
}
