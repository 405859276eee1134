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
        (
            "index.docker.io/bitnami/redis:7",
            "docker.io/bitnami/redis:7",
        ),
        (
            "registry-1.docker.io/library/nginx",
            "registry-1.docker.io/library/nginx",
        ),
        ("bitnami/redis", "docker.io/bitnami/redis"),
        ("library/foo/bar", "docker.io/library/foo/bar"),
        ("test_com/foo", "docker.io/test_com/foo"),
        (
            "public.ecr.aws/docker/library/nginx:1.21.4",
            "public.ecr.aws/docker/library/nginx:1.21.4",
        ),
        (
            "quay.io/prometheus/node-exporter:v1.8.2",
            "quay.io/prometheus/node-exporter:v1.8.2",
        ),
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
        (
            "busybox:Latest_v1.0-rc",
            "docker.io/library/busybox:Latest_v1.0-rc",
        ),
        (
            "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
            "docker.io/library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
        ),
        (
            "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
            "docker.io/library/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
        ),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .chain([
        (
            format!("busybox@{SHA256}"),
            format!("docker.io/library/busybox@{SHA256}"),
        ),
        (
            format!("busybox:latest@{SHA256}"),
            format!("docker.io/library/busybox:latest@{SHA256}"),
        ),
        (
            format!("quay.io/a/b@{sha384}"),
            format!("quay.io/a/b@{sha384}"),
        ),
        (
            format!("quay.io/a/b:x@{sha512}"),
            format!("quay.io/a/b:x@{sha512}"),
        ),
        (
            format!("nginx:{long_tag}"),
            format!("docker.io/library/nginx:{long_tag}"),
        ),
    ])
    .collect();
    for (input, expected) in cases {
        assert_eq!(normalized(&input), expected, "input {input:?}");
    }
}

#[test]
fn splits_registry_repository_tag_and_digest() {
    let r = Reference::parse_normalized(&format!("localhost:5000/team/app:1.0@{SHA256}")).unwrap();
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
    let result = TestRunner::new(config).run(&(generated(), near_miss()), |(generated, miss)| {
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
