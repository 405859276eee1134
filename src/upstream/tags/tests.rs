use std::time::{Duration, Instant};

use super::*;
use crate::testing::upstream::{Reply, Request, TestServer};
use crate::upstream::credential::Login;
use crate::upstream::endpoints::Endpoints;
use crate::upstream::error::RegistryError;
use crate::upstream::session;

const TAGS: &str = "/v2/library/nginx/tags/list";
const TOKEN: &str = "T0K3N";
const SECRET: &str = "s3cr3t-value";
/// base64("octocat:s3cr3t-value")
const BASIC: &str = "Basic b2N0b2NhdDpzM2NyM3QtdmFsdWU=";

fn login() -> Login {
    Login {
        username: "octocat".into(),
        secret: SECRET.into(),
    }
}

fn lister(server: &TestServer) -> TagLister {
    let endpoints = Endpoints::parse([format!("docker.io={}", server.url)]).unwrap();
    TagLister::new(endpoints).with_retries(4, Duration::from_millis(1))
}

async fn list(server: &TestServer, login: Option<&Login>) -> Result<Vec<String>, RegistryError> {
    lister(server)
        .list("docker.io", "library/nginx", login, None)
        .await
}

fn tag_list(tags: &[&str]) -> Reply {
    Reply::json(
        200,
        &serde_json::json!({ "name": "library/nginx", "tags": tags }).to_string(),
    )
}

fn last(request: &Request) -> Option<&str> {
    request
        .query
        .split('&')
        .find_map(|pair| pair.strip_prefix("last="))
}

/// Three pages, linked the ways registries write Link: a path, then an
/// absolute URL.
fn pages(request: &Request) -> Reply {
    match last(request) {
        None => tag_list(&["1.25", "1.26"]).header(
            "Link",
            r#"</v2/library/nginx/tags/list?n=2&last=1.26>; rel="next""#,
        ),
        Some("1.26") => tag_list(&["1.27", "1.27.1"]).header(
            "Link",
            &format!(
                r#"<{}/v2/library/nginx/tags/list?n=2&last=1.27.1>; rel="next""#,
                request.origin()
            ),
        ),
        Some("1.27.1") => tag_list(&["latest"]),
        Some(_) => Reply::new(400),
    }
}

fn bearer_challenge(request: &Request, scope: bool) -> Reply {
    let mut challenge = format!(
        r#"Bearer realm="{}/token",service="registry.docker.io""#,
        request.origin()
    );
    if scope {
        challenge += r#",scope="repository:library/nginx:pull""#;
    }
    Reply::json(
        401,
        r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
    )
    .header("WWW-Authenticate", &challenge)
}

/// Docker Hub's way: tags for a token from its realm.
fn token_registry(request: &Request) -> Reply {
    match request.path.as_str() {
        "/token" => Reply::json(200, &format!(r#"{{"token":"{TOKEN}","expires_in":300}}"#)),
        TAGS if request.header("authorization") == Some(&format!("Bearer {TOKEN}")) => {
            pages(request)
        }
        TAGS => bearer_challenge(request, true),
        _ => Reply::new(404),
    }
}

#[tokio::test]
async fn a_token_from_the_challenges_realm_opens_every_page() {
    let server = TestServer::start(token_registry).await;
    let tags = list(&server, None).await.unwrap();
    assert_eq!(tags, ["1.25", "1.26", "1.27", "1.27.1", "latest"]);

    let requests = server.requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, [TAGS, "/token", TAGS, TAGS, TAGS]);
    assert_eq!(requests[0].query, "n=1000");
    assert_eq!(requests[0].header("authorization"), None);
    assert!(requests[0]
        .header("user-agent")
        .is_some_and(|agent| agent.starts_with("ecr-cache-warmer/")));
    assert_eq!(
        requests[1].query,
        "service=registry.docker.io&scope=repository%3Alibrary%2Fnginx%3Apull"
    );
    assert_eq!(requests[1].header("authorization"), None, "no login");
    assert_eq!(requests[2].query, "n=1000");
    assert_eq!(requests[3].query, "n=2&last=1.26");
    assert_eq!(requests[4].query, "n=2&last=1.27.1");
    for page in &requests[2..] {
        assert_eq!(
            page.header("authorization"),
            Some("Bearer T0K3N"),
            "{page:?}"
        );
    }
}

#[tokio::test]
async fn without_a_scope_in_the_challenge_the_repository_pull_scope_is_asked() {
    let server = TestServer::start(|request: &Request| match request.path.as_str() {
        "/token" => Reply::json(200, r#"{"access_token":"T0K3N"}"#),
        TAGS if request.header("authorization").is_some() => tag_list(&["a"]),
        _ => bearer_challenge(request, false),
    })
    .await;
    assert_eq!(list(&server, None).await.unwrap(), ["a"]);
    assert_eq!(
        server.requests_for("/token")[0].query,
        "service=registry.docker.io&scope=repository%3Alibrary%2Fnginx%3Apull"
    );
}

#[tokio::test]
async fn the_login_goes_to_the_token_endpoint_as_basic() {
    let server = TestServer::start(token_registry).await;
    let tags = list(&server, Some(&login())).await.unwrap();
    assert_eq!(tags.len(), 5);
    let token = server.requests_for("/token");
    assert_eq!(token.len(), 1);
    assert_eq!(token[0].header("authorization"), Some(BASIC));
    assert_eq!(server.requests_for(TAGS)[0].header("authorization"), None);
}

#[tokio::test]
async fn a_refused_login_is_unauthorized_and_never_shown() {
    let server = TestServer::start(|request: &Request| match request.path.as_str() {
        "/token" => Reply::json(401, r#"{"details":"incorrect username or password"}"#),
        _ => bearer_challenge(request, true),
    })
    .await;
    let login = login();
    let error = list(&server, Some(&login)).await.unwrap_err();
    assert_eq!(error.kind(), "unauthorized");
    assert!(!error.is_retryable());
    let message = error.to_string();
    for expected in [
        "library/nginx on docker.io",
        "401 Unauthorized",
        "incorrect username or password",
        "ecr-pullthroughcache/",
        "accessToken",
    ] {
        assert!(message.contains(expected), "{expected:?} in {message}");
    }
    let shown = format!("{error} {error:?} {login:?}");
    for hidden in [SECRET, "b2N0b2NhdDpzM2NyM3QtdmFsdWU", "octocat"] {
        assert!(!shown.contains(hidden), "{hidden:?} in {shown}");
    }
    assert_eq!(server.requests_for("/token").len(), 1, "not retried");
}

#[tokio::test]
async fn anonymous_refusal_says_to_give_the_rule_a_credential() {
    let server = TestServer::start(|request: &Request| match request.path.as_str() {
        "/token" => Reply::json(200, r#"{"token":"T0K3N"}"#),
        _ => bearer_challenge(request, true),
    })
    .await;
    let error = list(&server, None).await.unwrap_err();
    assert_eq!(error.kind(), "unauthorized");
    let message = error.to_string();
    assert!(message.contains("anonymously"), "{message}");
    assert!(
        message.contains("UNAUTHORIZED: authentication required"),
        "{message}"
    );
    assert_eq!(
        server.requests_for(TAGS).len(),
        2,
        "once anonymous, once with the token"
    );
}

#[tokio::test]
async fn an_expired_token_is_renewed_once_on_a_later_page() {
    let server = TestServer::start(|request: &Request| match request.path.as_str() {
        "/token" => Reply::json(200, &format!(r#"{{"token":"T{}"}}"#, request.nth + 1)),
        TAGS => match (request.header("authorization"), last(request)) {
            (Some(_), None) => tag_list(&["a"]).header(
                "Link",
                r#"</v2/library/nginx/tags/list?last=a>; rel="next""#,
            ),
            (Some("Bearer T2"), Some("a")) => tag_list(&["b"]),
            _ => bearer_challenge(request, true),
        },
        _ => Reply::new(404),
    })
    .await;
    assert_eq!(list(&server, None).await.unwrap(), ["a", "b"]);
    assert_eq!(server.requests_for("/token").len(), 2);
}

#[tokio::test]
async fn a_basic_challenge_is_answered_with_the_login() {
    let basic = |request: &Request| match request.header("authorization") {
        Some(BASIC) => tag_list(&["a"]),
        _ => Reply::new(401).header("WWW-Authenticate", r#"Basic realm="Registry""#),
    };
    let server = TestServer::start(basic).await;
    assert_eq!(list(&server, Some(&login())).await.unwrap(), ["a"]);
    assert_eq!(server.requests().len(), 2);

    let server = TestServer::start(basic).await;
    let error = list(&server, None).await.unwrap_err();
    assert_eq!(error.kind(), "unauthorized");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_429_is_tried_again_once_its_retry_after_has_passed() {
    let server = TestServer::start(|request: &Request| match request.nth {
        0 => Reply::json(
            429,
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
        )
        .header("Retry-After", "1"),
        _ => tag_list(&["a"]),
    })
    .await;
    let started = std::time::Instant::now();
    assert_eq!(list(&server, None).await.unwrap(), ["a"]);
    assert_eq!(server.requests().len(), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_503_is_tried_again() {
    let server = TestServer::start(|request: &Request| match request.nth {
        0 => Reply::new(503),
        _ => tag_list(&["a"]),
    })
    .await;
    assert_eq!(list(&server, None).await.unwrap(), ["a"]);
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn throttling_that_lasts_says_so_with_its_retry_after() {
    let server = TestServer::start(|_: &Request| {
        Reply::json(
            429,
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"pull rate limit"}]}"#,
        )
    })
    .await;
    let error = list(&server, None).await.unwrap_err();
    assert_eq!(error.kind(), "throttled");
    assert!(error.is_retryable());
    assert_eq!(server.requests().len(), 4);
    let message = error.to_string();
    assert!(
        message.contains("TOOMANYREQUESTS: pull rate limit"),
        "{message}"
    );
    assert!(message.contains("after 4 attempts"), "{message}");
    assert!(message.contains("rate limit"), "{message}");
}

#[tokio::test]
async fn a_missing_repository_is_not_found_with_the_library_hint() {
    let server = TestServer::start(|_: &Request| {
        Reply::json(
            404,
            r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#,
        )
    })
    .await;
    let error = list(&server, None).await.unwrap_err();
    assert_eq!(error.kind(), "not-found");
    assert!(!error.is_retryable());
    let message = error.to_string();
    assert!(message.contains("NAME_UNKNOWN"), "{message}");
    assert!(message.contains("library/<name>"), "{message}");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn the_deadline_stops_retries() {
    let server = TestServer::start(|_: &Request| Reply::new(503)).await;
    let lister = lister(&server).with_retries(100, Duration::from_millis(50));
    let deadline = Instant::now() + Duration::from_secs(2);
    let error = lister
        .list("docker.io", "library/nginx", None, Some(deadline))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "unavailable");
    // Each wait at least doubles from 50 ms: 2 s leave room for 6 attempts.
    let attempts = server.requests().len();
    assert!((2..=6).contains(&attempts), "{attempts} attempts");
}

#[tokio::test]
async fn a_retry_after_beyond_the_deadline_is_not_waited_for() {
    let server = TestServer::start(|_: &Request| Reply::new(503).header("Retry-After", "30")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let error = lister(&server)
        .list("docker.io", "library/nginx", None, Some(deadline))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "unavailable");
    assert!(error.to_string().contains("Retry-After 30 s"), "{error}");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_retry_after_longer_than_a_minute_is_not_waited_for() {
    let server = TestServer::start(|_: &Request| {
        Reply::json(429, r#"{"errors":[]}"#).header("Retry-After", "120")
    })
    .await;
    let error = list(&server, None).await.unwrap_err();
    assert_eq!(error.kind(), "throttled");
    assert!(error.to_string().contains("Retry-After 120 s"), "{error}");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn no_request_starts_after_the_deadline() {
    let server = TestServer::start(|_: &Request| tag_list(&["a"])).await;
    let error = lister(&server)
        .list("docker.io", "library/nginx", None, Some(Instant::now()))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "deadline");
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn an_unreachable_registry_is_unavailable_with_the_route_hint() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    let endpoints = Endpoints::parse([format!("quay.io=http://{address}")]).unwrap();
    let error = TagLister::new(endpoints)
        .with_retries(2, Duration::from_millis(1))
        .list("quay.io", "prometheus/node-exporter", None, None)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "unavailable");
    let message = error.to_string();
    assert!(message.contains("after 2 attempts"), "{message}");
    assert!(message.contains("network route"), "{message}");
}

#[tokio::test]
async fn an_endpoint_under_a_path_keeps_it_on_every_page() {
    const PREFIXED: &str = "/upstream/quay.io/v2/prometheus/node-exporter/tags/list";
    let server = TestServer::start(|request: &Request| {
        match (request.path.as_str(), last(request)) {
        (PREFIXED, None) => Reply::json(200, r#"{"tags":["a"]}"#).header(
            "Link",
            r#"</v2/prometheus/node-exporter/tags/list?n=1&last=a>; rel="next""#,
        ),
        (PREFIXED, Some("a")) => Reply::json(200, r#"{"tags":["b"]}"#).header(
            "Link",
            r#"</upstream/quay.io/v2/prometheus/node-exporter/tags/list?n=1&last=b>; rel="next""#,
        ),
        (PREFIXED, Some("b")) => Reply::json(200, r#"{"tags":null}"#),
        _ => Reply::new(404),
    }
    })
    .await;
    let endpoints = Endpoints::parse([format!("quay.io={}/upstream/quay.io", server.url)]).unwrap();
    let tags = TagLister::new(endpoints)
        .list("quay.io", "prometheus/node-exporter", None, None)
        .await
        .unwrap();
    assert_eq!(tags, ["a", "b"]);
    assert_eq!(server.requests_for(PREFIXED).len(), 3);
}

#[tokio::test]
async fn a_link_back_to_a_listed_page_ends_paging() {
    let server = TestServer::start(|_: &Request| {
        tag_list(&["a"]).header(
            "Link",
            r#"</v2/library/nginx/tags/list?n=1000>; rel="next""#,
        )
    })
    .await;
    let error = list(&server, None).await.unwrap_err();
    assert_eq!(error.kind(), "protocol");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_body_that_is_no_tag_list_is_a_protocol_error() {
    let server = TestServer::start(|_: &Request| Reply::new(200).body("<html>hello</html>")).await;
    let error = list(&server, None).await.unwrap_err();
    assert_eq!(error.kind(), "protocol");
    assert!(error.to_string().contains("upstream endpoint"), "{error}");
}

#[tokio::test]
async fn what_is_not_a_registry_or_repository_is_refused_before_asking() {
    let lister = TagLister::new(Endpoints::default());
    for (registry, repository) in [
        ("quay.io/x", "a/b"),
        ("quay.io", "a/../b"),
        ("quay.io", "a?b"),
        ("quay.io", "A/b"),
        ("quay.io", ""),
    ] {
        let error = lister
            .list(registry, repository, None, None)
            .await
            .unwrap_err();
        assert_eq!(error.kind(), "invalid", "{registry} {repository}");
    }
}

#[test]
fn the_next_link_is_found_among_others() {
    assert_eq!(
        next_in(r#"</v2/library/nginx/tags/list?n=2&last=x>; rel="next""#),
        Some("/v2/library/nginx/tags/list?n=2&last=x")
    );
    assert_eq!(
        next_in(
            r#"<https://a.example/first>; rel="first", <https://a.example/2>; title="p;2"; REL=next"#
        ),
        Some("https://a.example/2")
    );
    assert_eq!(next_in(r#"</a>; rel="prev next""#), Some("/a"));
    assert_eq!(next_in(r#"</a>; rel="nextish""#), None);
    assert_eq!(next_in(r#"</a>; rel="prev""#), None);
    assert_eq!(next_in(""), None);
}

fn url(text: &str) -> Url {
    Url::parse(text).unwrap()
}

fn resolved(base: &str, answered: &str, target: &str) -> Result<String, Problem> {
    resolve(Some(&url(base)), &url(answered), target).map(String::from)
}

#[test]
fn a_link_resolves_against_the_url_that_answered() {
    let page = "https://quay.io/v2/a/b/tags/list?n=2";
    let next = "https://quay.io/v2/a/b/tags/list?n=2&last=x";
    assert_eq!(
        resolved("https://quay.io", page, "/v2/a/b/tags/list?n=2&last=x").unwrap(),
        next
    );
    assert_eq!(
        resolved("https://quay.io", page, "list?n=2&last=x").unwrap(),
        next
    );
    assert_eq!(resolved("https://quay.io", page, next).unwrap(), next);

    let base = "http://127.0.0.1:5000/upstream/quay.io";
    let page = "http://127.0.0.1:5000/upstream/quay.io/v2/a/b/tags/list?n=2";
    let next = "http://127.0.0.1:5000/upstream/quay.io/v2/a/b/tags/list?n=2&last=x";
    assert_eq!(
        resolved(base, page, "/v2/a/b/tags/list?n=2&last=x").unwrap(),
        next
    );
    assert_eq!(
        resolved(base, page, "/upstream/quay.io/v2/a/b/tags/list?n=2&last=x").unwrap(),
        next
    );
    assert_eq!(resolved(base, page, next).unwrap(), next);
}

#[test]
fn a_link_to_another_origin_is_refused() {
    let page = "https://quay.io/v2/a/b/tags/list";
    for target in [
        "https://elsewhere.example/v2/a/b/tags/list?last=x",
        "http://quay.io/v2/a/b/tags/list?last=x",
        "//elsewhere.example/x",
    ] {
        let problem = resolved("https://quay.io", page, target).unwrap_err();
        assert_eq!(problem.kind(), "protocol", "{target}");
    }
}

#[test]
fn a_login_debugs_as_redacted() {
    let shown = format!("{:?}", login());
    assert!(
        !shown.contains("octocat") && !shown.contains(SECRET),
        "{shown}"
    );
}

#[tokio::test]
async fn after_a_redirect_to_another_origin_no_page_gets_the_registrys_credential() {
    // Artifact Registry's part: its own token, asked for anonymously.
    let elsewhere = TestServer::start(|request: &Request| match request.path.as_str() {
        "/token" => Reply::json(200, r#"{"token":"ELSEWHERE"}"#),
        TAGS if request.header("authorization") == Some("Bearer ELSEWHERE") => {
            match last(request) {
                None => tag_list(&["a"]).header(
                    "Link",
                    r#"</v2/library/nginx/tags/list?n=1000&last=a>; rel="next""#,
                ),
                Some(_) => tag_list(&["b"]),
            }
        }
        _ => bearer_challenge(request, true),
    })
    .await;
    let moved = format!("{}{TAGS}?n=1000", elsewhere.url);
    // registry.k8s.io's part: its API moved elsewhere, once authenticated.
    let server = TestServer::start(move |request: &Request| match request.path.as_str() {
        "/token" => Reply::json(200, &format!(r#"{{"token":"{TOKEN}"}}"#)),
        TAGS if request.header("authorization") == Some(&format!("Bearer {TOKEN}")) => {
            Reply::new(307).header("Location", &moved)
        }
        _ => bearer_challenge(request, true),
    })
    .await;

    let tags = list(&server, Some(&login())).await.unwrap();
    assert_eq!(tags, ["a", "b"]);
    assert_eq!(
        server.requests_for("/token")[0].header("authorization"),
        Some(BASIC)
    );
    let pages = elsewhere.requests_for(TAGS);
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert_eq!(last(&pages[2]), Some("a"));
    for request in elsewhere.requests() {
        let authorization = request.header("authorization").unwrap_or_default();
        assert!(
            !authorization.contains(TOKEN) && !authorization.starts_with("Basic"),
            "{request:?}"
        );
    }
    assert_eq!(elsewhere.requests_for("/token").len(), 1);
}

#[tokio::test]
async fn a_redirect_to_plain_http_elsewhere_is_refused() {
    let server = TestServer::start(|_: &Request| {
        Reply::new(302).header(
            "Location",
            "http://registry.example/v2/library/nginx/tags/list",
        )
    })
    .await;
    let error = list(&server, None).await.unwrap_err();
    assert_eq!(error.kind(), "insecure");
    assert!(!error.is_retryable());
    let message = error.to_string();
    for expected in [
        "redirects to http://registry.example/v2/library/nginx/tags/list",
        "only to https",
        "library/nginx on docker.io",
    ] {
        assert!(message.contains(expected), "{expected:?} in {message}");
    }
    assert_eq!(server.requests().len(), 1, "not tried again");
}

#[tokio::test]
async fn a_chain_of_redirects_ends_after_five() {
    let server = TestServer::start(|request: &Request| {
        Reply::new(307).header(
            "Location",
            &format!("{}{TAGS}?hop={}", request.origin(), request.nth + 1),
        )
    })
    .await;
    let error = list(&server, None).await.unwrap_err();
    assert_eq!(error.kind(), "insecure");
    assert!(
        error.to_string().contains("more than 5 redirects"),
        "{error}"
    );
    assert_eq!(server.requests().len(), 6);
}

#[test]
fn redirects_lead_to_https_or_stay_home() {
    let allowed = |from: &str, to: &str| session::redirect_allowed(&url(from), &url(to)).is_ok();
    assert!(allowed(
        "https://registry.k8s.io/v2/",
        "https://us-west1-docker.pkg.dev/v2/"
    ));
    assert!(allowed(
        "http://127.0.0.1:5000/v2/",
        "https://cdn.example/v2/"
    ));
    assert!(allowed(
        "http://127.0.0.1:5000/v2/",
        "http://127.0.0.1:5001/v2/"
    ));
    assert!(!allowed("https://quay.io/v2/", "http://quay.io/v2/"));
    assert!(!allowed("https://quay.io/v2/", "http://cdn.example/v2/"));
    assert!(!allowed(
        "http://127.0.0.1:5000/v2/",
        "http://169.254.169.254/latest/"
    ));
}

#[tokio::test]
async fn a_page_larger_than_its_cap_is_refused_without_being_read_whole() {
    // 300 MiB, as a stream: no Content-Length says how long it is.
    let chunk = format!("\"{}\",", "a".repeat(1022)).repeat(64);
    let server = TestServer::start(move |_: &Request| {
        Reply::new(200)
            .body(r#"{"tags":["#)
            .repeat(&chunk, 300 << 4, Duration::ZERO)
    })
    .await;
    let error = list(&server, None).await.unwrap_err();
    assert_eq!(error.kind(), "too-large");
    let message = error.to_string();
    for expected in ["GET http://", "more than 8 MiB", "a tags page"] {
        assert!(message.contains(expected), "{expected:?} in {message}");
    }
    assert!(
        server.body_bytes_written() < 64 << 20,
        "{} bytes sent",
        server.body_bytes_written()
    );
    assert_eq!(server.requests().len(), 1, "not tried again");

    // One that says so up front is not read at all.
    let server = TestServer::start(|_: &Request| {
        Reply::new(200)
            .header("Content-Length", "314572800")
            .repeat("x", 1, Duration::ZERO)
    })
    .await;
    assert_eq!(list(&server, None).await.unwrap_err().kind(), "too-large");
}

#[tokio::test]
async fn a_token_answer_larger_than_its_cap_is_refused() {
    let server = TestServer::start(|request: &Request| match request.path.as_str() {
        "/token" => {
            Reply::new(200)
                .body(r#"{"token":""#)
                .repeat(&"t".repeat(1024), 100, Duration::ZERO)
        }
        _ => bearer_challenge(request, true),
    })
    .await;
    let error = list(&server, None).await.unwrap_err();
    assert_eq!(error.kind(), "too-large");
    assert!(
        error
            .to_string()
            .contains("64 KiB, the most read of a token answer"),
        "{error}"
    );
}

#[tokio::test]
async fn a_body_that_trickles_is_cut_at_the_deadline() {
    let server = TestServer::start(|_: &Request| {
        Reply::new(200)
            .body(r#"{"tags":["a""#)
            .repeat(r#","b""#, 600, Duration::from_millis(100))
    })
    .await;
    let started = Instant::now();
    let error = lister(&server)
        .list(
            "docker.io",
            "library/nginx",
            None,
            Some(started + Duration::from_secs(1)),
        )
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(error.is_retryable(), "{error}");
    assert!(
        matches!(error.kind(), "unavailable" | "deadline"),
        "{error}"
    );
}

#[tokio::test]
async fn a_token_serves_later_calls_until_it_expires() {
    let server = TestServer::start(token_registry).await;
    let registry = lister(&server);
    for _ in 0..2 {
        let tags = registry
            .list("docker.io", "library/nginx", None, None)
            .await;
        assert_eq!(tags.unwrap().len(), 5);
    }
    assert_eq!(server.requests_for("/token").len(), 1);
    let first_pages: Vec<Request> = server
        .requests_for(TAGS)
        .into_iter()
        .filter(|request| request.query == "n=1000")
        .collect();
    assert_eq!(first_pages.len(), 3, "the second call is not challenged");
    assert_eq!(first_pages[2].header("authorization"), Some("Bearer T0K3N"));

    // A token about to expire is not used again.
    let server = TestServer::start(|request: &Request| match request.path.as_str() {
        "/token" => Reply::json(200, r#"{"token":"T0K3N","expires_in":2}"#),
        _ => token_registry(request),
    })
    .await;
    let registry = lister(&server);
    for _ in 0..2 {
        registry
            .list("docker.io", "library/nginx", None, None)
            .await
            .unwrap();
    }
    assert_eq!(server.requests_for("/token").len(), 2);
}

#[tokio::test]
async fn a_login_refused_by_a_realm_elsewhere_says_to_check_the_credential() {
    // Docker Hub's realm is auth.docker.io, not the registry's own host.
    let realm = TestServer::start(|_: &Request| {
        Reply::json(401, r#"{"details":"incorrect username or password"}"#)
    })
    .await;
    let challenge = format!(
        r#"Bearer realm="{}/token",service="registry.docker.io""#,
        realm.url
    );
    let server = TestServer::start(move |_: &Request| {
        Reply::json(401, r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#)
            .header("WWW-Authenticate", &challenge)
    })
    .await;
    let error = list(&server, Some(&login())).await.unwrap_err();
    assert_eq!(error.kind(), "unauthorized");
    let message = error.to_string();
    assert!(message.contains("check the credential"), "{message}");
    assert!(!message.contains("anonymously"), "{message}");
    assert_eq!(realm.requests()[0].header("authorization"), Some(BASIC));
}

#[test]
fn a_realm_is_https_when_the_registry_is() {
    let realm = |challenged: &str, realm: &str| {
        session::realm_url(&url(challenged), realm).map(String::from)
    };
    let page = "https://registry-1.docker.io/v2/library/nginx/tags/list";
    assert_eq!(
        realm(page, "https://auth.docker.io/token").unwrap(),
        "https://auth.docker.io/token"
    );
    assert_eq!(
        realm(page, "/token").unwrap(),
        "https://registry-1.docker.io/token"
    );
    let refused = realm(page, "http://auth.docker.io/token").unwrap_err();
    assert_eq!(refused.kind(), "insecure");
    assert!(
        refused.to_string().contains("http://auth.docker.io/token"),
        "{refused}"
    );
    let plain = "http://127.0.0.1:5000/v2/library/nginx/tags/list";
    assert!(realm(plain, "http://127.0.0.1:5000/token").is_ok());
}
