use super::*;

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";

fn caller() -> Caller {
    Caller {
        account: ACCOUNT.to_string(),
        arn: format!("arn:aws:sts::{ACCOUNT}:assumed-role/warmer/session"),
    }
}

fn arn(path: &str) -> String {
    format!("arn:aws:ecr:{REGION}:{ACCOUNT}:{path}")
}

/// A policy of one statement per (effect, principal, actions, resource paths).
fn policy(statements: &[(&str, &str, &[&str], &[&str])]) -> String {
    let statements: Vec<Value> = statements
        .iter()
        .enumerate()
        .map(|(i, (effect, principal, actions, paths))| {
            serde_json::json!({
                "Sid": format!("S{i}"),
                "Effect": effect,
                "Principal": {"AWS": principal},
                "Action": actions,
                "Resource": paths
                    .iter()
                    .map(|p| match *p == "*" || p.starts_with("arn:") {
                        true => p.to_string(),
                        false => arn(p),
                    })
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({"Version": "2012-10-17", "Statement": statements}).to_string()
}

const ROOT_PRINCIPAL: &str = "arn:aws:iam::123456789012:root";
const BOTH: &[&str] = &[CREATE, IMPORT];

fn judge(text: &str, prefix: &str) -> PrefixJudgement {
    let caller = caller();
    let scope = Scope {
        caller: &caller,
        region: REGION,
        account: ACCOUNT,
    };
    Policy::parse(text).unwrap().judge_prefix(prefix, &scope)
}

fn verdict(text: &str, prefix: &str, repository: &str, exists: bool) -> Verdict {
    let caller = caller();
    let scope = Scope {
        caller: &caller,
        region: REGION,
        account: ACCOUNT,
    };
    let policy = Policy::parse(text).unwrap();
    let judgement = policy.judge_prefix(prefix, &scope);
    policy.judge_repository(repository, exists, &judgement, &scope)
}

#[test]
fn the_policy_is_judged_per_prefix() {
    let narrow = policy(&[(
        "Allow",
        ROOT_PRINCIPAL,
        BOTH,
        &["repository/ecr-public/docker/*"],
    )]);
    let part = Grant::Part(vec!["repository/ecr-public/docker/*".to_string()]);
    let cases: Vec<(&str, String, &str, Grant, Grant, usize, usize)> = vec![
        (
            "the whole prefix",
            policy(&[("Allow", ROOT_PRINCIPAL, BOTH, &["repository/ecr-public/*"])]),
            "ecr-public",
            Grant::Whole,
            Grant::Whole,
            0,
            0,
        ),
        (
            "a narrower path",
            narrow.clone(),
            "ecr-public",
            part.clone(),
            part.clone(),
            0,
            0,
        ),
        (
            "a narrower path says nothing of another prefix",
            narrow,
            "docker-hub",
            Grant::Nothing,
            Grant::Nothing,
            0,
            0,
        ),
        (
            "a wildcard action on every resource",
            policy(&[("Allow", "*", &["ecr:*"], &["*"])]),
            "ecr-public",
            Grant::Whole,
            Grant::Whole,
            0,
            0,
        ),
        (
            "a wildcard in the path that covers the prefix",
            policy(&[(
                "Allow",
                ACCOUNT,
                &["ECR:Batch*", CREATE],
                &["repository/ecr-*"],
            )]),
            "ecr-public",
            Grant::Whole,
            Grant::Whole,
            0,
            0,
        ),
        (
            "one action only",
            policy(&[("Allow", ROOT_PRINCIPAL, &[CREATE], &["repository/*"])]),
            "ecr-public",
            Grant::Whole,
            Grant::Nothing,
            0,
            0,
        ),
        (
            "a Deny",
            policy(&[
                ("Allow", ROOT_PRINCIPAL, BOTH, &["repository/*"]),
                ("Deny", "*", &[CREATE], &["repository/ecr-public/*"]),
            ]),
            "ecr-public",
            Grant::Whole,
            Grant::Whole,
            1,
            0,
        ),
        (
            "a principal that is not the caller",
            policy(&[(
                "Allow",
                "arn:aws:iam::123456789012:role/other",
                BOTH,
                &["repository/ecr-public/*"],
            )]),
            "ecr-public",
            Grant::Nothing,
            Grant::Nothing,
            0,
            1,
        ),
        (
            "another Region's repositories",
            policy(&[(
                "Allow",
                ROOT_PRINCIPAL,
                BOTH,
                &["arn:aws:ecr:eu-west-1:123456789012:repository/*"],
            )]),
            "ecr-public",
            Grant::Nothing,
            Grant::Nothing,
            0,
            0,
        ),
        (
            "ROOT and a policy on one namespace",
            policy(&[("Allow", ROOT_PRINCIPAL, BOTH, &["repository/team/*"])]),
            ROOT,
            Grant::Part(vec!["repository/team/*".to_string()]),
            Grant::Part(vec!["repository/team/*".to_string()]),
            0,
            0,
        ),
    ];
    for (case, text, prefix, create, import, denials, others) in cases {
        let judgement = judge(&text, prefix);
        assert_eq!(
            (&judgement.create, &judgement.import),
            (&create, &import),
            "{case}"
        );
        assert_eq!(judgement.denials.len(), denials, "{case}");
        assert_eq!(judgement.other_principals.len(), others, "{case}");
    }
}

#[test]
fn each_cache_repository_is_judged_against_the_policy() {
    let narrow = policy(&[(
        "Allow",
        ROOT_PRINCIPAL,
        BOTH,
        &["repository/ecr-public/docker/*"],
    )]);
    assert_eq!(
        verdict(
            &narrow,
            "ecr-public",
            "ecr-public/docker/library/redis",
            false
        ),
        Verdict::Allowed
    );
    assert_eq!(
        verdict(&narrow, "ecr-public", "ecr-public/nginx/nginx", false),
        Verdict::Missing(vec![CREATE, IMPORT])
    );
    assert_eq!(
        verdict(&narrow, "ecr-public", "ecr-public/nginx/nginx", true),
        Verdict::Missing(vec![IMPORT]),
        "an existing repository needs no CreateRepository"
    );
    assert_eq!(
        verdict(&narrow, "docker-hub", "docker-hub/library/nginx", false),
        Verdict::Silent
    );
    let denied = policy(&[
        ("Allow", "*", &["ecr:*"], &["*"]),
        (
            "Deny",
            ROOT_PRINCIPAL,
            &[IMPORT],
            &["repository/ecr-public/nginx/*"],
        ),
    ]);
    assert_eq!(
        verdict(&denied, "ecr-public", "ecr-public/nginx/nginx", true),
        Verdict::Denied(Denial {
            statement: "S1".to_string(),
            paths: vec!["repository/ecr-public/nginx/*".to_string()]
        })
    );
    assert_eq!(
        verdict(
            &denied,
            "ecr-public",
            "ecr-public/docker/library/redis",
            false
        ),
        Verdict::Allowed
    );
}

#[test]
fn a_policy_that_does_not_parse_is_a_clear_error() {
    let error = Policy::parse("{\"Statement\": [").unwrap_err();
    assert!(matches!(error, PolicyError::Json(_)));
    let message = error.to_string();
    assert!(
        message.starts_with("the registry permissions policy is not valid JSON (")
            && message.contains("aws ecr put-registry-policy"),
        "{message}"
    );
    assert_eq!(
        Policy::parse("{\"Version\": \"2012-10-17\"}").unwrap_err(),
        PolicyError::NoStatement
    );
}

#[test]
fn statements_not_judged_are_named() {
    let text = serde_json::json!({"Statement": [{
        "Sid": "AllButNginx", "Effect": "Allow", "Principal": "*",
        "Action": [CREATE, IMPORT], "NotResource": arn("repository/ecr-public/nginx/*"),
    }]})
    .to_string();
    let judgement = judge(&text, "ecr-public");
    assert_eq!(judgement.unjudged, ["AllButNginx (it uses NotResource)"]);
    assert_eq!(judgement.create, Grant::Nothing);
}

#[test]
fn wildcards_match_like_iam() {
    assert!(glob("repository/*", "repository/a/b"));
    assert!(glob("repository/a?c/*", "repository/abc/d"));
    assert!(!glob("repository/a/*", "repository/b/c"));
    assert!(covers("*", "repository/ecr-public/"));
    assert!(covers("repository/ecr-*", "repository/ecr-public/"));
    assert!(covers("repository/ecr-public/*", "repository/ecr-public/"));
    assert!(!covers(
        "repository/ecr-public/docker/*",
        "repository/ecr-public/"
    ));
    assert!(!covers("repository/ecr-public/x", "repository/ecr-public/"));
    assert!(intersects(
        "repository/ecr-public/docker/*",
        "repository/ecr-public/"
    ));
    assert!(intersects(
        "repository/*/docker/*",
        "repository/ecr-public/"
    ));
    assert!(!intersects(
        "repository/docker-hub/*",
        "repository/ecr-public/"
    ));
    assert!(!intersects(
        "repository/ecr-publicity/*",
        "repository/ecr-public/"
    ));
}
