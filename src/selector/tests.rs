use super::*;
use proptest::prelude::*;

const NGINX_TAGS: &str = "1.25.5 1.26 1.26.0 1.26.1 1.26.2 1.26.3 1.27 1.27.0 1.27.1 1.27.2 \
    1.27.3 1.27.0-alpine 1.27.1-alpine 1.27.2-alpine 1.27.3-alpine 1.27.3-alpine-slim \
    1.27.4-rc1 1.28.0 latest stable mainline alpine";
const NODE_EXPORTER_TAGS: &str = "v1.7.0 v1.8.0 v1.8.1 v1.8.2 v1.9.0 master latest";
const APP_TAGS: &str = "1.9.0 2.0.0 2.1.0 2.1.1 3.0.0 3.1.0-beta1 latest";
const SHA256: &str = "sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa";

/// Input, the error variant expected, and fragments of its message.
type ErrorCase = (
    &'static str,
    fn(&SelectorError) -> bool,
    &'static [&'static str],
);

fn tags(list: &str) -> Vec<String> {
    list.split_whitespace().map(String::from).collect()
}

fn parsed(entry: &str) -> Selector {
    match classify(entry) {
        Some(Ok(selector)) => selector,
        Some(Err(error)) => panic!("{entry:?} should parse: {error}"),
        None => panic!("{entry:?} should be a selector"),
    }
}

fn selected(entry: &str, list: &str) -> Vec<String> {
    let tags = tags(list);
    parsed(entry)
        .select(&tags)
        .into_iter()
        .map(String::from)
        .collect()
}

fn error(entry: &str) -> SelectorError {
    match classify(entry) {
        Some(Err(error)) => error,
        Some(Ok(selector)) => panic!("{entry:?} should not parse: {selector:?}"),
        None => panic!("{entry:?} should be a selector"),
    }
}

/// One row of the grammar: an entry, its parts, and what it selects.
struct Row {
    entry: &'static str,
    range: Option<&'static str>,
    newest: usize,
    matching: Option<&'static str>,
    written: &'static str,
    registry: &'static str,
    repository: &'static str,
    tags: &'static str,
    selects: &'static str,
}

fn grammar() -> Vec<Row> {
    let nginx = |entry, range, newest, matching, selects| Row {
        entry,
        range,
        newest,
        matching,
        written: "nginx",
        registry: "docker.io",
        repository: "library/nginx",
        tags: NGINX_TAGS,
        selects,
    };
    vec![
        nginx("nginx:~1.27", Some("~1.27"), 1, None, "1.27.3"),
        nginx(
            "nginx:~1.26 newest=2",
            Some("~1.26"),
            2,
            None,
            "1.26.3 1.26.2",
        ),
        nginx(
            "nginx:>=1.26 <1.28 newest=10",
            Some(">=1.26, <1.28"),
            10,
            None,
            "1.27.3 1.27.2 1.27.1 1.27.0 1.26.3 1.26.2 1.26.1 1.26.0",
        ),
        nginx("nginx:1.27.*", Some("1.27.*"), 1, None, "1.27.3"),
        nginx(
            "nginx:~1.27 match=-alpine$ newest=5",
            Some("~1.27"),
            5,
            Some("-alpine$"),
            "1.27.3-alpine 1.27.2-alpine 1.27.1-alpine 1.27.0-alpine",
        ),
        Row {
            entry: r"quay.io/prometheus/node-exporter:match=^v1\.8\.\d+$ newest=2",
            range: None,
            newest: 2,
            matching: Some(r"^v1\.8\.\d+$"),
            written: "quay.io/prometheus/node-exporter",
            registry: "quay.io",
            repository: "prometheus/node-exporter",
            tags: NODE_EXPORTER_TAGS,
            selects: "v1.8.2 v1.8.1",
        },
        Row {
            entry: "localhost:5000/team/app:^2",
            range: Some("^2"),
            newest: 1,
            matching: None,
            written: "localhost:5000/team/app",
            registry: "localhost:5000",
            repository: "team/app",
            tags: APP_TAGS,
            selects: "2.1.1",
        },
    ]
}

#[test]
fn grammar_rows_parse_into_their_parts_and_select_their_tags() {
    for row in grammar() {
        let selector = parsed(row.entry);
        let entry = row.entry;
        assert_eq!(selector.entry(), entry);
        assert_eq!(selector.to_string(), entry);
        assert_eq!(
            selector.range().map(ToString::to_string).as_deref(),
            row.range,
            "{entry}"
        );
        assert_eq!(selector.newest(), row.newest, "{entry}");
        assert_eq!(selector.match_pattern(), row.matching, "{entry}");
        assert_eq!(selector.exclude_pattern(), None, "{entry}");
        assert_eq!(selector.written_repository(), row.written, "{entry}");
        assert_eq!(selector.repository().registry(), row.registry, "{entry}");
        assert_eq!(
            selector.repository().repository(),
            row.repository,
            "{entry}"
        );
        assert_eq!(selector.repository().tag(), None, "{entry}");
        assert_eq!(selected(entry, row.tags), tags(row.selects), "{entry}");
    }
}

#[test]
fn entries_are_trimmed_and_parse_reads_them_alike() {
    let selector = parsed("  nginx:~1.27 newest=2 \t");
    assert_eq!(selector.entry(), "nginx:~1.27 newest=2");
    let parsed = Selector::parse("nginx:~1.27 newest=2").unwrap();
    assert_eq!(parsed.range(), selector.range());
    assert_eq!(parsed.newest(), 2);
}

#[test]
fn reference_text_is_the_written_repository_and_the_tag() {
    assert_eq!(
        parsed("nginx:~1.27").reference_text("1.27.3"),
        "nginx:1.27.3"
    );
    assert_eq!(
        parsed("localhost:5000/team/app:^2").reference_text("2.1.1"),
        "localhost:5000/team/app:2.1.1"
    );
}

#[test]
fn comparators_apart_or_with_commas_are_one_range() {
    let forms = [
        "nginx:>=1.26 <1.28",
        "nginx:>=1.26, <1.28",
        "nginx:>=1.26,<1.28",
        "nginx:>= 1.26 < 1.28",
        "nginx:>= 1.26 , < 1.28",
    ];
    for form in forms {
        assert_eq!(
            parsed(form).range().map(ToString::to_string).as_deref(),
            Some(">=1.26, <1.28"),
            "{form}"
        );
        assert_eq!(selected(form, NGINX_TAGS), ["1.27.3"], "{form}");
    }
}

#[test]
fn references_and_broken_references_are_not_selectors() {
    let digest = format!("nginx@{SHA256}");
    let tagged_digest = format!("nginx:1.27@{SHA256}");
    let range_digest = format!("nginx:~1.27@{SHA256}");
    let not_selectors = [
        "nginx",
        "nginx:1.27",
        "nginx:latest",
        "localhost:5000/team/app",
        "localhost:5000/team/app:2",
        digest.as_str(),
        tagged_digest.as_str(),
        // Errors of references: theirs fit better than a selector's.
        "nginx:",
        "nginx:   ",
        range_digest.as_str(),
        "Nginx:~1.27",
        "nginx ~1.27",
        "https://github.com/docker/docker",
        "localhost:5000/Foo",
        "nginx:-bad",
        "nginx:.1",
        "",
    ];
    for entry in not_selectors {
        assert!(classify(entry).is_none(), "{entry:?} is not a selector");
    }
}

#[test]
fn selectors_without_a_range_select_by_pattern_or_take_releases() {
    assert_eq!(
        selected("nginx:newest=3", NGINX_TAGS),
        ["1.28.0", "1.27.3", "1.27.2"]
    );
    // Versions first, newest first; then other tags, descending.
    assert_eq!(
        selected("nginx:match=alpine newest=10 exclude=slim", NGINX_TAGS),
        [
            "1.27.3-alpine",
            "1.27.2-alpine",
            "1.27.1-alpine",
            "1.27.0-alpine",
            "alpine"
        ]
    );
    assert_eq!(
        selected("nginx:match=^[a-z]+$ newest=10", NGINX_TAGS),
        ["stable", "mainline", "latest", "alpine"]
    );
    // Unanchored: a pattern matches anywhere in the tag.
    assert_eq!(selected("nginx:match=6.2", NGINX_TAGS), ["1.26.2"]);
}

#[test]
fn suffixed_tags_need_a_pattern_that_accepts_them() {
    assert_eq!(
        selected("nginx:~1.27 newest=10", NGINX_TAGS),
        ["1.27.3", "1.27.2", "1.27.1", "1.27.0"]
    );
    assert_eq!(selected("nginx:>=1.27.4 newest=10", NGINX_TAGS), ["1.28.0"]);
    assert_eq!(
        selected("nginx:~1.27 match=-rc", NGINX_TAGS),
        ["1.27.4-rc1"]
    );
    assert_eq!(
        selected("nginx:=1.27.3 match=. newest=10", NGINX_TAGS),
        ["1.27.3", "1.27.3-alpine", "1.27.3-alpine-slim"]
    );
    assert_eq!(
        selected("app:* match=beta newest=10", APP_TAGS),
        ["3.1.0-beta1"]
    );
    // Any text after PATCH is a suffix, not only a dash and a word.
    assert_eq!(
        selected("app:^1 newest=10", "1.2.3.1 1.2.3+b 1.2.3_x 1.2.2"),
        ["1.2.2"]
    );
    assert_eq!(
        selected("app:^1 match=\\.1$ newest=10", "1.2.3.1 1.2.3+b 1.2.2"),
        ["1.2.3.1"]
    );
}

#[test]
fn exclude_drops_what_it_matches() {
    assert_eq!(
        selected(r"nginx:~1.27 newest=3 exclude=^1\.27\.3$", NGINX_TAGS),
        ["1.27.2", "1.27.1", "1.27.0"]
    );
    assert_eq!(
        selected(
            "nginx:~1.27 match=alpine exclude=slim|^1.27.3 newest=5",
            NGINX_TAGS
        ),
        ["1.27.2-alpine", "1.27.1-alpine", "1.27.0-alpine"]
    );
    assert_eq!(
        selected("nginx:newest=2 exclude=^1.28", NGINX_TAGS),
        ["1.27.3", "1.27.2"]
    );
    let selector = parsed("nginx:exclude=x");
    assert_eq!(
        (
            selector.range(),
            selector.newest(),
            selector.exclude_pattern()
        ),
        (None, 1, Some("x"))
    );
}

#[test]
fn a_v_prefix_is_part_of_a_version() {
    let list = "v1.2.0 1.2.1 v1.3.0 1.3.0 v2.0.0-rc1 vv1.4.0 V1.5.0";
    assert_eq!(
        selected("app:^1 newest=10", list),
        ["1.3.0", "v1.3.0", "1.2.1", "v1.2.0"]
    );
    assert_eq!(
        newest_tags(&tags(list), 10),
        [
            "v2.0.0-rc1",
            "1.3.0",
            "v1.3.0",
            "1.2.1",
            "v1.2.0",
            "vv1.4.0",
            "V1.5.0"
        ]
    );
}

#[test]
fn numbers_too_big_for_u64_are_not_versions() {
    let list = "18446744073709551616.0.0 1.18446744073709551616.0 18446744073709551615.0.0 1.0.0";
    assert_eq!(
        selected("app:* newest=10", list),
        ["18446744073709551615.0.0", "1.0.0"]
    );
    assert_eq!(
        selected("app:newest=10", list),
        ["18446744073709551615.0.0", "1.0.0"]
    );
    assert_eq!(
        newest_tags(&tags(list), 10),
        [
            "18446744073709551615.0.0",
            "1.0.0",
            "18446744073709551616.0.0",
            "1.18446744073709551616.0"
        ]
    );
}

#[test]
fn newest_tags_lists_versions_newest_first_then_the_others() {
    let nginx = tags(NGINX_TAGS);
    assert_eq!(
        newest_tags(&nginx, 5),
        [
            "1.28.0",
            "1.27.4-rc1",
            "1.27.3",
            "1.27.3-alpine",
            "1.27.3-alpine-slim"
        ]
    );
    assert_eq!(newest_tags(&nginx, 100).len(), nginx.len());
    assert_eq!(
        newest_tags(&nginx, 100)[16..],
        ["stable", "mainline", "latest", "alpine", "1.27", "1.26"]
    );
    assert!(newest_tags(&nginx, 0).is_empty());
    assert_eq!(newest_tags(&tags("1.0.0 1.0.0 a a"), 10), ["1.0.0", "a"]);
}

#[test]
fn errors_name_the_value_and_say_what_to_write() {
    let cases: Vec<ErrorCase> = vec![
        (
            "nginx:>=abc",
            |e| matches!(e, SelectorError::Range { .. }),
            &[
                r#"invalid version range ">=abc" in selector "nginx:>=abc": unexpected character 'a'"#,
                "write a range as for Cargo",
            ],
        ),
        (
            "nginx:~1.27 ~x newest=2",
            |e| matches!(e, SelectorError::Range { .. }),
            &[r#""~1.27 ~x""#],
        ),
        (
            "nginx:~1.27 match=a{1",
            |e| matches!(e, SelectorError::Regex { key: "match", .. }),
            &[
                r#"invalid regular expression "a{1" in match="#,
                "e.g. match=-alpine$",
            ],
        ),
        (
            "nginx:~1.27 exclude=(",
            |e| matches!(e, SelectorError::Regex { key: "exclude", .. }),
            &[r#""(" in exclude="#, "unclosed group"],
        ),
        (
            "nginx:match=(a{1000}){1000}",
            |e| matches!(e, SelectorError::Regex { .. }),
            &["(a{1000}){1000}", "size limit"],
        ),
        (
            "nginx:~1.27 newest=0",
            |e| matches!(e, SelectorError::Newest { .. }),
            &["invalid newest=0", "from 1 to 100"],
        ),
        (
            "nginx:~1.27 newest=101",
            |e| matches!(e, SelectorError::Newest { .. }),
            &["invalid newest=101"],
        ),
        (
            "nginx:~1.27 newest=x",
            |e| matches!(e, SelectorError::Newest { .. }),
            &["invalid newest=x"],
        ),
        (
            "nginx:~1.27 newest=+3",
            |e| matches!(e, SelectorError::Newest { .. }),
            &["invalid newest=+3"],
        ),
        (
            "nginx:~1.27 newest=",
            |e| matches!(e, SelectorError::Newest { .. }),
            &["invalid newest= in"],
        ),
        (
            "nginx:~1.27 newest=99999999999999999999999",
            |e| matches!(e, SelectorError::Newest { .. }),
            &["newest=99999999999999999999999"],
        ),
        (
            "nginx:~1.27 latest=1",
            |e| matches!(e, SelectorError::UnknownOption { .. }),
            &[
                r#"unknown option "latest""#,
                "newest=N, match=REGEX and exclude=REGEX",
            ],
        ),
        (
            "nginx:~1.27 newest=2 newest=3",
            |e| matches!(e, SelectorError::DuplicateOption { key: "newest", .. }),
            &["option newest= given twice", "give it once"],
        ),
        (
            "nginx:match=a match=b",
            |e| matches!(e, SelectorError::DuplicateOption { key: "match", .. }),
            &["option match= given twice"],
        ),
        (
            "nginx:newest=2 ~1.27",
            |e| matches!(e, SelectorError::RangeAfterOption { .. }),
            &[
                r#"version range "~1.27" comes after an option"#,
                "write the range first",
            ],
        ),
        (
            "nginx:match=a b",
            |e| matches!(e, SelectorError::RangeAfterOption { .. }),
            &[r#""b""#, r"\s"],
        ),
    ];
    for (entry, is_variant, fragments) in cases {
        let error = error(entry);
        assert!(is_variant(&error), "{entry:?}: unexpected {error:?}");
        let message = error.to_string();
        assert!(message.contains(&format!("{entry:?}")), "{message}");
        assert!(!message.contains('\n'), "{message}");
        for fragment in fragments {
            assert!(
                message.contains(fragment),
                "{entry:?}: {message:?} should contain {fragment:?}"
            );
        }
    }
}

#[test]
fn parse_refuses_an_empty_selector_and_a_missing_repository() {
    for entry in ["nginx:", "nginx:  "] {
        let error = Selector::parse(entry).unwrap_err();
        assert_eq!(
            error,
            SelectorError::Empty {
                entry: "nginx:".into()
            }
        );
        assert!(error.to_string().contains("e.g. nginx:~1.27"));
    }
    for entry in ["nginx", "~1.27", ":~1.27", "Nginx:~1.27"] {
        let error = Selector::parse(entry).unwrap_err();
        assert!(
            matches!(error, SelectorError::NoRepository { .. }),
            "{entry:?}: {error:?}"
        );
        assert!(error.to_string().contains(&format!("{entry:?}")));
    }
}

#[test]
fn object_form_reads_as_its_text_form() {
    let object: SelectorObject = serde_json::from_str(
        r#"{"repository": "nginx", "semver": ">=1.26, <1.28", "match": "-alpine$", "exclude": "^1\\.27\\.3", "newest": 3}"#,
    )
    .unwrap();
    let entry = object.to_entry().unwrap();
    assert_eq!(
        entry,
        r"nginx:>=1.26, <1.28 match=-alpine$ exclude=^1\.27\.3 newest=3"
    );
    let selector = Selector::parse(&entry).unwrap();
    assert_eq!(
        selector.select(&tags(NGINX_TAGS)),
        ["1.27.2-alpine", "1.27.1-alpine", "1.27.0-alpine"]
    );
    assert!(classify(&entry).is_some_and(|parsed| parsed.is_ok()));

    let entries = [
        (r#"{"repository": "nginx", "newest": 3}"#, "nginx:newest=3"),
        (
            r#"{"repository": "quay.io/prometheus/node-exporter", "match": "^v1\\.8"}"#,
            r"quay.io/prometheus/node-exporter:match=^v1\.8",
        ),
        (
            r#"{"repository": "localhost:5000/team/app", "semver": " ~2 "}"#,
            "localhost:5000/team/app:~2",
        ),
        // A range that would read as a tag keeps the default written out.
        (
            r#"{"repository": "nginx", "semver": "1.27"}"#,
            "nginx:1.27 newest=1",
        ),
    ];
    for (json, expected) in entries {
        let object: SelectorObject = serde_json::from_str(json).unwrap();
        let entry = object.to_entry().unwrap();
        assert_eq!(entry, expected);
        assert!(
            classify(&entry).is_some_and(|parsed| parsed.is_ok()),
            "{entry}"
        );
    }
    let selector = Selector::parse("nginx:1.27 newest=1").unwrap();
    assert_eq!(selector.select(&tags(NGINX_TAGS)), ["1.28.0"]);
}

#[test]
fn object_form_errors() {
    let to_entry = |json: &str| {
        let object: SelectorObject = serde_json::from_str(json).unwrap();
        object.to_entry().unwrap_err()
    };
    let cases: Vec<ErrorCase> = vec![
        (
            r#"{"repository": "nginx:1.27", "newest": 2}"#,
            |e| matches!(e, SelectorError::ObjectRepository { .. }),
            &[
                r#"invalid repository "nginx:1.27""#,
                "it has a tag",
                "without tag or digest",
            ],
        ),
        (
            r#"{"repository": "nginx@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa", "newest": 2}"#,
            |e| matches!(e, SelectorError::ObjectRepository { .. }),
            &["it has a digest"],
        ),
        (
            r#"{"repository": "Nginx", "newest": 2}"#,
            |e| matches!(e, SelectorError::ObjectRepository { .. }),
            &[r#""Nginx""#, "must be lowercase"],
        ),
        (
            r#"{"repository": "", "newest": 2}"#,
            |e| matches!(e, SelectorError::ObjectRepository { .. }),
            &["empty reference"],
        ),
        (
            r#"{"repository": "nginx", "match": "a b"}"#,
            |e| matches!(e, SelectorError::ObjectField { field: "match", .. }),
            &[r#"invalid match "a b""#, r"\s"],
        ),
        (
            r#"{"repository": "nginx", "newest": 2, "exclude": "a\tb"}"#,
            |e| {
                matches!(
                    e,
                    SelectorError::ObjectField {
                        field: "exclude",
                        ..
                    }
                )
            },
            &[r#"invalid exclude "a\tb""#],
        ),
        (
            r#"{"repository": "nginx", "exclude": "alpine"}"#,
            |e| matches!(e, SelectorError::ObjectSelectsNothing { .. }),
            &[r#"for "nginx" selects nothing"#, "semver, match or newest"],
        ),
        (
            r#"{"repository": "nginx"}"#,
            |e| matches!(e, SelectorError::ObjectSelectsNothing { .. }),
            &["selects nothing"],
        ),
        (
            r#"{"repository": "nginx", "semver": " "}"#,
            |e| {
                matches!(
                    e,
                    SelectorError::ObjectField {
                        field: "semver",
                        ..
                    }
                )
            },
            &[r#"invalid semver " ""#, "e.g. ~1.27"],
        ),
        (
            r#"{"repository": "nginx", "semver": "~1.27 newest=5"}"#,
            |e| {
                matches!(
                    e,
                    SelectorError::ObjectField {
                        field: "semver",
                        ..
                    }
                )
            },
            &[r#""~1.27 newest=5""#, "fields of their own"],
        ),
    ];
    for (json, is_variant, fragments) in cases {
        let error = to_entry(json);
        assert!(is_variant(&error), "{json}: unexpected {error:?}");
        let message = error.to_string();
        for fragment in fragments {
            assert!(
                message.contains(fragment),
                "{json}: {message:?} should contain {fragment:?}"
            );
        }
    }

    // Errors of the text form surface when the entry is parsed.
    let parse = |json: &str| {
        let object: SelectorObject = serde_json::from_str(json).unwrap();
        Selector::parse(&object.to_entry().unwrap()).unwrap_err()
    };
    assert!(matches!(
        parse(r#"{"repository": "nginx", "semver": ">=abc"}"#),
        SelectorError::Range { .. }
    ));
    assert!(matches!(
        parse(r#"{"repository": "nginx", "newest": 0}"#),
        SelectorError::Newest { .. }
    ));
    assert!(matches!(
        parse(r#"{"repository": "nginx", "match": "("}"#),
        SelectorError::Regex { .. }
    ));

    for json in [
        r#"{"repository": "nginx", "newest": 2, "tag": "x"}"#,
        r#"{"repository": "nginx", "newest": -1}"#,
        r#"{"repository": "nginx", "newest": "2"}"#,
        r#"{"newest": 2}"#,
    ] {
        assert!(
            serde_json::from_str::<SelectorObject>(json).is_err(),
            "{json}"
        );
    }
}

#[test]
fn continues_selector_rejoins_what_a_comma_cut() {
    let cases = [
        ("nginx:>=1.26", " <1.28", true),
        ("nginx:>=1.26", "newest=3", true),
        ("nginx:~1.27 match=a{1", "3}", true),
        ("  nginx:>=1.26 ", " < 1.28 ", true),
        ("nginx:~1.27", "redis:7", false),
        ("nginx:~1.27", "redis", false),
        ("nginx:~1.27", "quay.io/a/b:~1", false),
        ("nginx:1.27", "<1.28", false),
        ("nginx", "<1.28", false),
        ("nginx:", "<1.28", false),
    ];
    for (previous, fragment, expected) in cases {
        assert_eq!(
            continues_selector(previous, fragment),
            expected,
            "{previous:?} + {fragment:?}"
        );
    }
    let joined = ["nginx:>=1.26", " <1.28 newest=3"].join(",");
    assert_eq!(
        selected(&joined, NGINX_TAGS),
        ["1.27.3", "1.27.2", "1.27.1"]
    );
}

/// An entry made of selector-like tokens, to reach past the first error.
fn selector_shaped() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        "[~^<>=]{0,2}v?[0-9]{1,3}(\\.[0-9*x]{1,3}){0,2}(-[a-z0-9]{1,4})?,?",
        "[<>=~^,]{1,2}",
        "newest=[0-9+x-]{0,4}",
        "(match|exclude)=[-a-z0-9.^$|()\\[\\]{},*+?\\\\d]{0,10}",
        "[a-z]{1,6}=[a-z]{0,3}",
        "\\PC{0,6}",
    ];
    prop::collection::vec(token, 0..6).prop_map(|tokens| format!("nginx:{}", tokens.join(" ")))
}

fn docker_reference() -> impl Strategy<Value = String> {
    let host = "(localhost|[a-z0-9]{1,8}(\\.[a-z0-9]{1,8}){1,2})(:[0-9]{1,5})?/";
    let path = "[a-z0-9]{1,8}([._-][a-z0-9]{1,8})?(/[a-z0-9]{1,8}([._-][a-z0-9]{1,8})?){0,2}";
    let tag = "(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,20})?";
    let digest = "(@sha256:[0-9a-f]{64})?";
    (prop::option::of(host), path, tag, digest).prop_map(|(host, path, tag, digest)| {
        format!("{}{path}{tag}{digest}", host.unwrap_or_default())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn valid_references_are_never_selectors(reference in docker_reference()) {
        prop_assert!(Reference::parse_normalized(&reference).is_ok(), "{} should parse", reference);
        prop_assert!(classify(&reference).is_none(), "{} read as a selector", reference);
    }

    #[test]
    fn classify_never_panics(entry in "\\PC{0,200}") {
        let _ = classify(&entry);
        let _ = Selector::parse(&entry);
    }

    #[test]
    fn classify_never_panics_after_a_repository(selector in "\\PC{0,200}") {
        let _ = classify(&format!("nginx:{selector}"));
    }

    #[test]
    fn selections_are_bounded_ordered_and_from_the_listing(entry in selector_shaped()) {
        let tags = tags(NGINX_TAGS);
        if let Some(Ok(selector)) = classify(&entry) {
            let selection = selector.select(&tags);
            prop_assert!(selection.len() <= selector.newest());
            for tag in &selection {
                prop_assert!(tags.iter().any(|t| t == tag));
                prop_assert!(!selector.exclude.as_ref().is_some_and(|re| re.is_match(tag.as_bytes())));
            }
            for pair in selection.windows(2) {
                let (a, b) = ((TagVersion::parse(pair[0]), pair[0]), (TagVersion::parse(pair[1]), pair[1]));
                prop_assert_eq!(newest_first(&a, &b), Ordering::Less, "{:?}", selection);
            }
        }
    }

    #[test]
    fn the_order_of_the_listing_does_not_matter(shuffled in Just(tags(NGINX_TAGS)).prop_shuffle()) {
        let in_order = tags(NGINX_TAGS);
        for row in grammar().iter().filter(|row| row.tags == NGINX_TAGS) {
            let selector = parsed(row.entry);
            prop_assert_eq!(selector.select(&shuffled), selector.select(&in_order));
        }
        prop_assert_eq!(newest_tags(&shuffled, 100), newest_tags(&in_order, 100));
    }

    #[test]
    fn the_order_of_the_options_does_not_matter(
        options in Just(vec!["match=alpine", "exclude=slim", "newest=3"]).prop_shuffle()
    ) {
        let tags = tags(NGINX_TAGS);
        let entry = format!("nginx:~1.27 {}", options.join(" "));
        prop_assert_eq!(
            parsed(&entry).select(&tags),
            ["1.27.3-alpine", "1.27.2-alpine", "1.27.1-alpine"]
        );
    }
}

#[test]
fn patterns_read_tags_as_ascii() {
    let tags = tags(NGINX_TAGS);
    let select = |entry: &str| parsed(entry).select(&tags);
    // Classes of a thousand Unicode ranges would not fit the size limit.
    assert_eq!(
        select(r"nginx:match=^\w{1,40}\.\d+\.\d+-\w{6}$ newest=2"),
        ["1.27.3-alpine", "1.27.2-alpine"]
    );
    assert_eq!(
        select(r"nginx:match=^\w{200}$|^\d\.\d+$ newest=2"),
        ["1.27", "1.26"]
    );
    assert_eq!(select(r"nginx:~1.27 match=(?i)ALPINE$"), ["1.27.3-alpine"]);
    assert_eq!(
        select(r"nginx:~1.27 match=^1\.27\..*-slim$"),
        ["1.27.3-alpine-slim"]
    );
    assert_eq!(
        select(r"nginx:~1.26 exclude=\b0$ newest=9"),
        ["1.26.3", "1.26.2", "1.26.1"]
    );
}

#[test]
fn a_pattern_too_big_or_of_unicode_classes_says_why() {
    let message = error(r"nginx:match=(\w{40}){40}").to_string();
    for expected in [
        r#""(\\w{40}){40}" in match="#,
        "more than 64 KiB",
        "size limit",
    ] {
        assert!(message.contains(expected), "{expected:?} in {message}");
    }
    let message = error(r"nginx:exclude=\p{Greek} newest=2").to_string();
    for expected in [r#""\\p{Greek}" in exclude="#, "tags are ASCII", "[a-z]"] {
        assert!(message.contains(expected), "{expected:?} in {message}");
    }
    // Refused again, the same way, when the pattern comes back.
    assert_eq!(
        error(r"nginx:exclude=\p{Greek} newest=2").to_string(),
        message
    );
}
