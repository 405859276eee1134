use super::*;

fn rules(texts: &[&str]) -> Rules {
    Rules::parse_each(texts).unwrap()
}

fn cache_repository(rules: &Rules, reference: &str) -> Result<(String, String), String> {
    let reference = Reference::parse_normalized(reference).unwrap();
    rules
        .map(&reference)
        .map(|m| (m.cache_repository, m.rule.to_string()))
        .map_err(|e| e.to_string())
}

/// One rule for every upstream kind ECR supports.
fn all_upstreams() -> Rules {
    rules(&[
        "docker-hub=registry-1.docker.io",
        "ecr-public=public.ecr.aws",
        "k8s=registry.k8s.io",
        "quay=quay.io",
        "ghcr=ghcr.io",
        "gitlab=registry.gitlab.com",
        "azure=myregistry.azurecr.io",
        "chainguard=cgr.dev",
        "central=111122223333.dkr.ecr.eu-west-1.amazonaws.com",
    ])
}

#[test]
fn maps_every_upstream_kind() {
    let rules = all_upstreams();
    let cases = [
        (
            "nginx:1.27",
            "docker-hub/library/nginx",
            "docker-hub=registry-1.docker.io",
        ),
        (
            "docker.io/nginx",
            "docker-hub/library/nginx",
            "docker-hub=registry-1.docker.io",
        ),
        (
            "index.docker.io/library/nginx",
            "docker-hub/library/nginx",
            "docker-hub=registry-1.docker.io",
        ),
        (
            "registry-1.docker.io/library/nginx",
            "docker-hub/library/nginx",
            "docker-hub=registry-1.docker.io",
        ),
        (
            "registry-1.docker.io/nginx",
            "docker-hub/library/nginx",
            "docker-hub=registry-1.docker.io",
        ),
        (
            "bitnami/redis:7.2",
            "docker-hub/bitnami/redis",
            "docker-hub=registry-1.docker.io",
        ),
        (
            "public.ecr.aws/docker/library/nginx:1.21.4",
            "ecr-public/docker/library/nginx",
            "ecr-public=public.ecr.aws",
        ),
        (
            "registry.k8s.io/pause:3.10",
            "k8s/pause",
            "k8s=registry.k8s.io",
        ),
        (
            "quay.io/prometheus/node-exporter:v1.8.2",
            "quay/prometheus/node-exporter",
            "quay=quay.io",
        ),
        (
            "ghcr.io/external-secrets/external-secrets:v0.10.0",
            "ghcr/external-secrets/external-secrets",
            "ghcr=ghcr.io",
        ),
        (
            "registry.gitlab.com/gitlab-org/gitlab-runner:latest",
            "gitlab/gitlab-org/gitlab-runner",
            "gitlab=registry.gitlab.com",
        ),
        (
            "myregistry.azurecr.io/team/app:1",
            "azure/team/app",
            "azure=myregistry.azurecr.io",
        ),
        (
            "cgr.dev/chainguard/static:latest",
            "chainguard/chainguard/static",
            "chainguard=cgr.dev",
        ),
        (
            "111122223333.dkr.ecr.eu-west-1.amazonaws.com/team/app:1",
            "central/team/app",
            "central=111122223333.dkr.ecr.eu-west-1.amazonaws.com",
        ),
        (
            "QUAY.IO/prometheus/node-exporter",
            "quay/prometheus/node-exporter",
            "quay=quay.io",
        ),
    ];
    for (reference, repository, rule) in cases {
        assert_eq!(
            cache_repository(&rules, reference),
            Ok((repository.to_string(), rule.to_string())),
            "{reference}"
        );
    }
}

#[test]
fn root_prefix_caches_at_the_registry_root() {
    let rules = rules(&["ROOT=public.ecr.aws"]);
    assert_eq!(
        cache_repository(&rules, "public.ecr.aws/docker/library/nginx"),
        Ok(("docker/library/nginx".into(), "ROOT=public.ecr.aws".into()))
    );
}

#[test]
fn upstream_prefix_replaces_the_first_part_and_the_most_specific_rule_wins() {
    let rules = rules(&[
        "my-app=registry-1.docker.io/upstream-app",
        "docker-hub=registry-1.docker.io",
    ]);
    assert_eq!(
        cache_repository(&rules, "upstream-app/image1:1"),
        Ok((
            "my-app/image1".into(),
            "my-app=registry-1.docker.io/upstream-app".into()
        ))
    );
    assert_eq!(
        cache_repository(&rules, "other/image1"),
        Ok((
            "docker-hub/other/image1".into(),
            "docker-hub=registry-1.docker.io".into()
        ))
    );
    // "upstream-apps" is not under "upstream-app/".
    assert_eq!(
        cache_repository(&rules, "upstream-apps/image1").unwrap().0,
        "docker-hub/upstream-apps/image1"
    );
}

#[test]
fn a_reference_to_the_private_registry_keeps_its_path() {
    let rules = rules(&[
        "docker-hub=registry-1.docker.io",
        "ecr-public=public.ecr.aws",
    ]);
    assert_eq!(
        cache_repository(
            &rules,
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/docker-hub/library/nginx:1.27"
        ),
        Ok((
            "docker-hub/library/nginx".into(),
            "docker-hub=registry-1.docker.io".into()
        ))
    );
    let error = cache_repository(
        &rules,
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:1",
    )
    .unwrap_err();
    assert!(
        error.contains(
            "no pull-through cache rule for registry 123456789012.dkr.ecr.us-east-1.amazonaws.com"
        ),
        "{error}"
    );
}

const OWN: &str = "222222222222.dkr.ecr.us-east-1.amazonaws.com";

fn docker_hub() -> Rules {
    rules(&["docker-hub=registry-1.docker.io"])
}

#[test]
fn the_callers_own_registry_keeps_its_path() {
    let own = docker_hub().with_own_registry("222222222222", "us-east-1");
    let mapped = Ok((
        "docker-hub/library/nginx".to_string(),
        "docker-hub=registry-1.docker.io".to_string(),
    ));
    for host in [
        OWN,
        "222222222222.dkr.ecr-fips.us-east-1.amazonaws.com",
        "222222222222.DKR.ECR.US-EAST-1.AMAZONAWS.COM",
    ] {
        let reference = format!("{host}/docker-hub/library/nginx:1.27");
        assert_eq!(cache_repository(&own, &reference), mapped, "{host}");
    }
    let china = docker_hub().with_own_registry("222222222222", "cn-north-1");
    assert_eq!(
        cache_repository(
            &china,
            "222222222222.dkr.ecr.cn-north-1.amazonaws.com.cn/docker-hub/library/nginx"
        ),
        mapped
    );
}

#[test]
fn another_accounts_or_regions_registry_is_refused_and_named() {
    let own = docker_hub().with_own_registry("222222222222", "us-east-1");
    let error = cache_repository(
        &own,
        "111111111111.dkr.ecr.us-east-1.amazonaws.com/docker-hub/library/nginx:1.27",
    )
    .unwrap_err();
    assert_eq!(
        error,
        format!(
            "111111111111.dkr.ecr.us-east-1.amazonaws.com is another account's or Region's \
             registry; this caller's is {OWN}: warm it from that account and Region, or pull \
             it through a rule whose upstream is 111111111111.dkr.ecr.us-east-1.amazonaws.com"
        )
    );
    let error = cache_repository(
        &own,
        "222222222222.dkr.ecr.eu-west-1.amazonaws.com/docker-hub/library/nginx:1.27",
    )
    .unwrap_err();
    assert!(
        error.starts_with(&format!(
            "222222222222.dkr.ecr.eu-west-1.amazonaws.com is another account's or Region's \
             registry; this caller's is {OWN}: "
        )),
        "{error}"
    );
    let china = docker_hub().with_own_registry("222222222222", "cn-north-1");
    let error = cache_repository(&china, &format!("{OWN}/docker-hub/library/nginx")).unwrap_err();
    assert!(
        error.contains("this caller's is 222222222222.dkr.ecr.cn-north-1.amazonaws.com.cn:"),
        "{error}"
    );
}

#[test]
fn with_only_the_region_known_another_regions_registry_is_refused() {
    let own = docker_hub().with_own_region("us-east-1");
    assert_eq!(
        cache_repository(
            &own,
            "111111111111.dkr.ecr.us-east-1.amazonaws.com/docker-hub/library/nginx"
        )
        .unwrap()
        .0,
        "docker-hub/library/nginx",
        "the account is not known, so any account of the Region maps"
    );
    let error = cache_repository(
        &own,
        "111111111111.dkr.ecr.eu-west-1.amazonaws.com/docker-hub/library/nginx",
    )
    .unwrap_err();
    assert_eq!(
        error,
        "111111111111.dkr.ecr.eu-west-1.amazonaws.com is a registry of Region eu-west-1; \
         this caller is in Region us-east-1: warm it from eu-west-1, or pull it through a \
         rule whose upstream is 111111111111.dkr.ecr.eu-west-1.amazonaws.com"
    );
}

#[test]
fn without_the_callers_registry_any_private_registry_keeps_its_path() {
    for host in [OWN, "111111111111.dkr.ecr.eu-west-1.amazonaws.com"] {
        let reference = format!("{host}/docker-hub/library/nginx:1.27");
        assert_eq!(
            cache_repository(&docker_hub(), &reference).unwrap().0,
            "docker-hub/library/nginx",
            "{host}"
        );
    }
}

#[test]
fn another_registry_with_a_rule_for_it_is_pulled_through_that_rule() {
    let rules = rules(&[
        "docker-hub=registry-1.docker.io",
        "central=111111111111.dkr.ecr.eu-west-1.amazonaws.com",
    ])
    .with_own_registry("222222222222", "us-east-1");
    assert_eq!(
        cache_repository(
            &rules,
            "111111111111.dkr.ecr.eu-west-1.amazonaws.com/docker-hub/library/nginx:1.27"
        ),
        Ok((
            "central/docker-hub/library/nginx".into(),
            "central=111111111111.dkr.ecr.eu-west-1.amazonaws.com".into()
        ))
    );
}

#[test]
fn no_match_names_the_registry_and_the_rules() {
    let rules = rules(&[
        "docker-hub=registry-1.docker.io",
        "ecr-public=public.ecr.aws",
    ]);
    let error = cache_repository(&rules, "quay.io/prometheus/node-exporter").unwrap_err();
    assert_eq!(
        error,
        "no pull-through cache rule for registry quay.io (rules: docker-hub=registry-1.docker.io, \
         ecr-public=public.ecr.aws); add one with --rule PREFIX=quay.io or create it in ECR"
    );
    let error = cache_repository(&Rules::default(), "nginx").unwrap_err();
    assert!(
        error.contains("registry docker.io (there are no rules)"),
        "{error}"
    );
    let error = cache_repository(&rules, "Docker/docker").unwrap_err();
    assert!(error.contains("must be lowercase"), "{error}");
    let narrow = super::Rules::parse_each(&["my-app=registry-1.docker.io/upstream-app"]).unwrap();
    let error = cache_repository(&narrow, "nginx").unwrap_err();
    assert!(
        error.contains("does not cover repository library/nginx"),
        "{error}"
    );
}

#[test]
fn parses_rule_syntax_and_refuses_bad_rules() {
    let rule = Rule::parse(" my-app = https://Registry-1.docker.io/upstream-app ").unwrap();
    assert_eq!(rule.to_string(), "my-app=registry-1.docker.io/upstream-app");
    assert_eq!(
        Rule::parse("k8s=registry.k8s.io/ROOT").unwrap().to_string(),
        "k8s=registry.k8s.io"
    );
    assert_eq!(
        Rules::parse_list("a1=quay.io, b2=ghcr.io\n")
            .unwrap()
            .iter()
            .count(),
        2
    );

    let cases = [
        ("docker-hub", "expected PREFIX=UPSTREAM"),
        (
            "Docker-Hub=registry-1.docker.io",
            "invalid repository prefix \"Docker-Hub\"",
        ),
        ("x=quay.io", "invalid repository prefix \"x\""),
        ("docker-hub=", "invalid upstream registry \"\""),
        (
            "docker-hub=bad host",
            "invalid upstream registry \"bad host\"",
        ),
        (
            "ROOT=registry-1.docker.io/upstream-app",
            "it needs an ECR prefix other than ROOT",
        ),
        (
            "my-app=registry-1.docker.io/Upstream",
            "invalid upstream repository prefix \"Upstream\"",
        ),
    ];
    for (text, expected) in cases {
        let error = Rule::parse(text).unwrap_err().to_string();
        assert!(error.contains(expected), "{text}: {error}");
        assert!(
            error.contains(text.split('=').next().unwrap()),
            "{text}: {error}"
        );
    }
    let error = Rules::parse_each(&["a1=quay.io", "a1=ghcr.io"]).unwrap_err();
    assert_eq!(error, RuleError::Duplicate("a1".into()));
}

#[test]
fn a_rule_list_reads_like_an_image_list() {
    let text = "# upstreams of the cache\n\
                docker-hub=registry-1.docker.io  # official images need library/\n\
                \n\
                ecr-public=public.ecr.aws, quay=quay.io\r\n\
                #ghcr=ghcr.io\n";
    let listed: Vec<String> = Rules::parse_list(text)
        .unwrap()
        .iter()
        .map(Rule::to_string)
        .collect();
    assert_eq!(
        listed,
        [
            "docker-hub=registry-1.docker.io",
            "ecr-public=public.ecr.aws",
            "quay=quay.io"
        ]
    );
}
