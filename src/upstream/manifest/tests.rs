use std::time::Duration;

use super::*;
use crate::testing::upstream::{Reply, Request, TestServer};
use crate::upstream::credential::Login;
use crate::upstream::endpoints::Endpoints;
use crate::upstream::error::RegistryError;
use crate::upstream::registry::{HttpRegistry, Registry};

const MANIFEST: &str = "/v2/library/nginx/manifests/1.27";
const DIGEST: &str = "sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn registry(server: &TestServer) -> HttpRegistry {
    let endpoints = Endpoints::parse([format!("docker.io={}", server.url)]).unwrap();
    HttpRegistry::new(endpoints).with_retries(2, Duration::from_millis(1))
}

async fn head(server: &TestServer, reference: &str) -> Result<ManifestHead, RegistryError> {
    registry(server)
        .manifest_head("docker.io", "library/nginx", reference, None, None)
        .await
}

/// Docker Hub's way: a token first, then the digest and the pulls left.
fn docker_hub(request: &Request) -> Reply {
    match (request.path.as_str(), request.header("authorization")) {
        ("/token", _) => Reply::json(200, r#"{"token":"T0K3N","expires_in":300}"#),
        (MANIFEST, Some("Bearer T0K3N")) => Reply::new(200)
            .header("Content-Type", INDEX)
            .header("Docker-Content-Digest", DIGEST)
            .header("ratelimit-limit", "100;w=21600")
            .header("ratelimit-remaining", "76;w=21600")
            .body(r#"{"schemaVersion":2,"manifests":[]}"#),
        (MANIFEST, _) => Reply::json(401, r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#).header(
            "WWW-Authenticate",
            &format!(
                r#"Bearer realm="{}/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
                request.origin()
            ),
        ),
        _ => Reply::json(
            404,
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        ),
    }
}

#[tokio::test]
async fn a_head_reads_the_digest_type_and_rate_limit_without_a_pull() {
    let server = TestServer::start(docker_hub).await;
    let read = head(&server, "1.27").await.unwrap();
    assert_eq!(
        read,
        ManifestHead {
            digest: Some(DIGEST.into()),
            media_type: Some(INDEX.into()),
            rate_limit: Some(RateLimit {
                limit: 100,
                remaining: 76,
                window_seconds: Some(21600),
            }),
        }
    );
    let asked = server.requests_for(MANIFEST);
    assert_eq!(asked.len(), 2, "once anonymous, once with the token");
    for request in &asked {
        assert_eq!(
            request.method, "HEAD",
            "a GET counts as a pull: {request:?}"
        );
        let accept = request.header("accept").unwrap_or_default();
        for media_type in MANIFEST_TYPES {
            assert!(accept.contains(media_type), "{media_type} in {accept}");
        }
    }
    assert!(server
        .requests()
        .iter()
        .all(|r| r.method != "GET" || r.path == "/token"));
}

#[tokio::test]
async fn a_digest_is_asked_as_it_is_and_headers_may_be_missing() {
    let path = format!("/v2/library/nginx/manifests/{DIGEST}");
    let server = TestServer::start(move |request: &Request| match request.path == path {
        true => Reply::new(200),
        false => Reply::new(404),
    })
    .await;
    let read = head(&server, DIGEST).await.unwrap();
    assert_eq!(
        read,
        ManifestHead {
            digest: None,
            media_type: None,
            rate_limit: None,
        }
    );
}

#[tokio::test]
async fn a_missing_tag_is_not_found_and_names_it() {
    let server = TestServer::start(docker_hub).await;
    let login = Login {
        username: "octocat".into(),
        secret: "s3cr3t".into(),
    };
    let error = registry(&server)
        .manifest_head("docker.io", "library/nginx", "1.99", Some(&login), None)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "not-found");
    let message = error.to_string();
    for expected in [
        "cannot read the manifest 1.99 of library/nginx on docker.io",
        "HEAD http://",
        "404 Not Found",
    ] {
        assert!(message.contains(expected), "{expected:?} in {message}");
    }
    assert!(!message.contains("s3cr3t"));
}

#[tokio::test]
async fn what_is_neither_tag_nor_digest_is_refused_before_asking() {
    let server = TestServer::start(docker_hub).await;
    for reference in [
        "",
        "../x",
        "a/b",
        "-x",
        "1.27?x",
        "sha256:xyz",
        &"a".repeat(129),
    ] {
        let error = head(&server, reference).await.unwrap_err();
        assert_eq!(error.kind(), "invalid", "{reference:?}");
    }
    assert!(server.requests().is_empty());
}

#[test]
fn rate_limit_headers_read_as_docker_hub_writes_them() {
    assert_eq!(quota("100;w=21600"), Some((100, Some(21600))));
    assert_eq!(quota(" 76 ; W=21600 "), Some((76, Some(21600))));
    assert_eq!(quota("5000"), Some((5000, None)));
    assert_eq!(quota("many"), None);
    let headers = |pairs: &[(&'static str, &'static str)]| {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    };
    assert_eq!(
        rate_limit(&headers(&[
            ("ratelimit-limit", "200"),
            ("ratelimit-remaining", "3;w=21600")
        ])),
        Some(RateLimit {
            limit: 200,
            remaining: 3,
            window_seconds: Some(21600),
        })
    );
    assert_eq!(
        rate_limit(&headers(&[("ratelimit-limit", "100;w=21600")])),
        None
    );
}
