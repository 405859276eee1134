//! The findings, judged from what ECR said: per rule its credential, the
//! registry permissions policy (for the rule and for each image given), the
//! repository creation template, and the cache repositories; then the images
//! that no rule covers.

use super::policy::{Denial, Grant, Policy, PrefixJudgement, Scope, Verdict, CREATE, IMPORT};
use super::registry::{Facts, Fetched, Repositories, Repository, Template, Validation};
use super::report::{Caller, Check, Finding, Status};
use crate::plan::PlannedImage;
use crate::rules::{Credential, Rule, Rules, ROOT};

pub fn judge(
    facts: &Facts,
    caller: &Caller,
    region: &str,
    rules: &Rules,
    images: &[PlannedImage],
) -> Vec<Finding> {
    let account = facts.registry_id.as_deref().unwrap_or(&caller.account);
    let scope = Scope {
        caller,
        region,
        account,
    };
    let prefixes: Vec<&str> = rules.iter().map(Rule::ecr_prefix).collect();
    let mut findings = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let prefix = rule.ecr_prefix();
        let validation = facts.validations.get(i).and_then(Option::as_ref);
        findings.push(credential(rule, validation));
        match facts
            .policy
            .as_ref()
            .map(|text| text.as_deref().map(Policy::parse))
        {
            Err(error) => findings.push(unreadable_policy(prefix, error)),
            Ok(None) => findings.push(no_policy(prefix)),
            Ok(Some(Err(error))) => findings.push(Finding {
                check: Check::RegistryPolicy,
                status: Status::Error,
                subject: prefix.to_string(),
                message: error.to_string(),
                fix: Some(
                    "put a valid policy back: aws ecr put-registry-policy --policy-text \
                     file://policy.json"
                        .to_string(),
                ),
            }),
            Ok(Some(Ok(policy))) => {
                let judgement = policy.judge_prefix(prefix, &scope);
                findings.push(policy_finding(prefix, &judgement, &scope));
                let mine = images.iter().filter(|image| {
                    image
                        .target
                        .as_ref()
                        .is_some_and(|target| target.rule_prefix == prefix)
                });
                findings.extend(mine.filter_map(|image| {
                    image_finding(image, &policy, &judgement, &facts.repositories, &scope)
                }));
            }
        }
        findings.push(template(prefix, &facts.templates));
        findings.extend(repositories(prefix, &prefixes, &facts.repositories, images));
    }
    findings.extend(
        images
            .iter()
            .filter(|image| image.target.is_none())
            .map(|image| Finding {
                check: Check::Image,
                status: Status::Error,
                subject: image.input.clone(),
                message: image.error.clone().unwrap_or_default(),
                fix: None,
            }),
    );
    findings
}

fn credential(rule: &Rule, validation: Option<&Fetched<Validation>>) -> Finding {
    let finding = |status, message: String, fix: Option<String>| Finding {
        check: Check::UpstreamCredential,
        status,
        subject: rule.ecr_prefix().to_string(),
        message,
        fix,
    };
    let (arn, failure) = match (rule.credential(), validation) {
        (Credential::Unknown, _) => {
            return finding(
                Status::Ok,
                format!(
                    "not validated: rule {} was given (--rule, WARM_RULES), so its credential is \
                     not known; without --rule the rules are read from ECR and validated",
                    rule
                ),
                None,
            )
        }
        (Credential::None, _) | (_, None) => {
            return finding(
                Status::Ok,
                format!(
                    "rule {} has no credential: its upstream is pulled anonymously",
                    rule
                ),
                None,
            )
        }
        (Credential::Given { .. }, Some(Err(error))) => {
            return finding(
                Status::Warning,
                format!(
                    "could not validate the credential of rule {}: {error}",
                    rule
                ),
                Some(
                    "allow this caller ecr:ValidatePullThroughCacheRule, or validate it \
                     yourself: aws ecr validate-pull-through-cache-rule \
                     --ecr-repository-prefix PREFIX"
                        .to_string(),
                ),
            )
        }
        (Credential::Given { arn }, Some(Ok(validation))) if validation.valid => {
            return finding(
                Status::Ok,
                format!("ECR validated the credential of rule {}: {arn}", rule),
                None,
            )
        }
        (Credential::Given { arn }, Some(Ok(validation))) => {
            (arn, validation.failure.as_deref().unwrap_or("not valid"))
        }
    };
    let prefix = rule.ecr_prefix();
    match secret_name(arn) {
        Some(name) => {
            let mut fix = format!(
                "put the upstream's user name and a valid access token in the secret {name}, as \
                 the JSON keys username and accessToken (aws secretsmanager put-secret-value \
                 --secret-id {name} --secret-string '{{\"username\":\"...\",\"accessToken\":\"...\"}}'); \
                 the secret must be in this account and Region"
            );
            if !name.starts_with("ecr-pullthroughcache/") {
                fix.push_str(", and its name must start with ecr-pullthroughcache/");
            }
            finding(
                Status::Error,
                format!(
                    "the credential of rule {} is not valid: {failure}. Pulls of new images and \
                     tag refreshes fail with UnableToGetUpstreamImageException until it is fixed",
                    rule
                ),
                Some(fix),
            )
        }
        None => finding(
            Status::Error,
            format!(
                "ECR cannot pull from the upstream of rule {} with the role {arn}: {failure}",
                rule
            ),
            Some(format!(
                "check that ECR may assume the role {arn} and that it may pull from the upstream \
                 registry; then aws ecr validate-pull-through-cache-rule --ecr-repository-prefix {prefix}"
            )),
        ),
    }
}

/// `ecr-pullthroughcache/docker-hub` from a Secrets Manager ARN, without the
/// six random characters that Secrets Manager appends; `None` for another ARN.
fn secret_name(arn: &str) -> Option<&str> {
    let (_, name) = arn.split_once(":secret:")?;
    let random = name
        .len()
        .checked_sub(7)
        .and_then(|at| Some((at, name.get(at..)?)));
    Some(match random {
        Some((at, tail))
            if tail.starts_with('-') && tail[1..].chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            &name[..at]
        }
        _ => name,
    })
}

/// `repository/PREFIX/*`, or `repository/*` for ROOT.
fn whole(prefix: &str) -> String {
    match prefix {
        ROOT => "repository/*".to_string(),
        _ => format!("repository/{prefix}/*"),
    }
}

/// `ecr-public/`, or `the registry` for ROOT.
fn under(prefix: &str) -> String {
    match prefix {
        ROOT => "the registry".to_string(),
        _ => format!("{prefix}/"),
    }
}

fn unreadable_policy(prefix: &str, error: &str) -> Finding {
    Finding {
        check: Check::RegistryPolicy,
        status: Status::Warning,
        subject: prefix.to_string(),
        message: format!("could not read the registry permissions policy: {error}"),
        fix: Some(
            "allow this caller ecr:GetRegistryPolicy, or read the policy yourself: aws ecr \
             get-registry-policy"
                .to_string(),
        ),
    }
}

fn no_policy(prefix: &str) -> Finding {
    Finding {
        check: Check::RegistryPolicy,
        status: Status::Ok,
        subject: prefix.to_string(),
        message: format!(
            "the registry has no permissions policy: first pulls under {} need {CREATE} and \
             {IMPORT} on {} from the caller's own IAM policy",
            under(prefix),
            whole(prefix)
        ),
        fix: None,
    }
}

fn policy_finding(prefix: &str, judgement: &PrefixJudgement, scope: &Scope<'_>) -> Finding {
    let finding = |status, message: String, fix: Option<String>| Finding {
        check: Check::RegistryPolicy,
        status,
        subject: prefix.to_string(),
        message: message + &notes(judgement),
        fix,
    };
    if !judgement.denials.is_empty() {
        let statements: Vec<&str> = judgement
            .denials
            .iter()
            .map(|denial| denial.statement.as_str())
            .collect();
        let paths: Vec<&str> = judgement
            .denials
            .iter()
            .flat_map(|denial| denial.paths.iter().map(String::as_str))
            .collect();
        return finding(
            Status::Error,
            format!(
                "the registry permissions policy denies this caller {CREATE} or {IMPORT} on {} \
                 ({}): first pulls there fail with \"repository ... does not exist\" or \"image \
                 not found\", whatever IAM allows",
                paths.join(", "),
                statements.join(", ")
            ),
            Some(format!(
                "remove or narrow the Deny statement {} of the registry policy (aws ecr \
                 get-registry-policy, then aws ecr put-registry-policy)",
                statements.join(", ")
            )),
        );
    }
    let whole_prefix = whole(prefix);
    match (&judgement.create, &judgement.import) {
        (Grant::Whole, Grant::Whole) => finding(
            Status::Ok,
            format!(
                "the registry permissions policy allows {CREATE} and {IMPORT} on all of \
                 {whole_prefix}"
            ),
            None,
        ),
        (Grant::Nothing, Grant::Nothing) => finding(
            Status::Ok,
            format!(
                "the registry permissions policy grants this caller nothing under {}: first \
                 pulls there need {CREATE} and {IMPORT} on {whole_prefix} from the caller's own \
                 IAM policy",
                under(prefix)
            ),
            None,
        ),
        (create, import) => {
            let symptom = match create {
                Grant::Whole => "as if the image were not found",
                _ => "with \"repository ... does not exist\"",
            };
            let allowed = match create == import {
                true => format!("{CREATE} and {IMPORT} {}", reach(create)),
                false => format!("{CREATE} {} and {IMPORT} {}", reach(create), reach(import)),
            };
            finding(
                Status::Warning,
                format!(
                    "the registry permissions policy allows {allowed}: first pulls anywhere else \
                     under {} will fail {symptom} unless the caller's own IAM policy grants them",
                    under(prefix)
                ),
                Some(format!(
                    "allow both actions on arn:aws:ecr:{}:{}:{whole_prefix} in the registry \
                     policy (aws ecr put-registry-policy), or in the IAM policy of every caller \
                     that pulls through the cache",
                    scope.region, scope.account
                )),
            )
        }
    }
}

/// `on all of …`, `only on …`, `nowhere`.
fn reach(grant: &Grant) -> String {
    match grant {
        Grant::Whole => "on the whole prefix".to_string(),
        Grant::Part(paths) => format!("only on {}", paths.join(", ")),
        Grant::Nothing => "nowhere".to_string(),
    }
}

/// What the judgement did not count, said after its message.
fn notes(judgement: &PrefixJudgement) -> String {
    let mut notes = String::new();
    if !judgement.other_principals.is_empty() {
        notes.push_str(&format!(
            ". Not counted, as they name other principals than this caller: {}",
            judgement.other_principals.join(", ")
        ));
    }
    if !judgement.unjudged.is_empty() {
        notes.push_str(&format!(". Not judged: {}", judgement.unjudged.join(", ")));
    }
    notes
}

fn image_finding(
    image: &PlannedImage,
    policy: &Policy,
    judgement: &PrefixJudgement,
    repositories: &Repositories,
    scope: &Scope<'_>,
) -> Option<Finding> {
    let target = image.target.as_ref()?;
    let repository = &target.cache_repository;
    let exists = repositories
        .known
        .iter()
        .any(|known| &known.name == repository);
    let (status, message, fix) = match policy.judge_repository(repository, exists, judgement, scope)
    {
        Verdict::Silent => return None,
        Verdict::Allowed => (
            Status::Ok,
            format!("the registry permissions policy allows the first pull into {repository}"),
            None,
        ),
        Verdict::Missing(actions) => {
            let symptom = match actions.contains(&CREATE) {
                true => format!("\"repository {repository} does not exist\""),
                false => "\"image not found\"".to_string(),
            };
            (
                Status::Warning,
                format!(
                    "{repository} will fail its first pull with {symptom}: the registry \
                         permissions policy allows {} elsewhere under {} but not on \
                         repository/{repository}, unless the caller's own IAM policy grants them",
                    actions.join(" and "),
                    under(&target.rule_prefix)
                ),
                Some(format!(
                    "add arn:aws:ecr:{}:{}:{} to the Resource of the registry policy's \
                         statement that allows them (aws ecr put-registry-policy), or grant them \
                         in the caller's IAM policy",
                    scope.region,
                    scope.account,
                    whole(&target.rule_prefix)
                )),
            )
        }
        Verdict::Denied(Denial { statement, paths }) => (
            Status::Error,
            format!(
                "{repository} will fail its first pull: the registry permissions policy's \
                     statement {statement} denies it on {}",
                paths.join(", ")
            ),
            Some(format!(
                "remove or narrow the Deny statement {statement} of the registry policy"
            )),
        ),
    };
    Some(Finding {
        check: Check::RegistryPolicy,
        status,
        subject: image.input.clone(),
        message,
        fix,
    })
}

fn template(prefix: &str, templates: &Fetched<Vec<Template>>) -> Finding {
    let finding = |status, message: String, fix: Option<String>| Finding {
        check: Check::CreationTemplate,
        status,
        subject: prefix.to_string(),
        message,
        fix,
    };
    let templates = match templates {
        Ok(templates) => templates,
        Err(error) => {
            return finding(
                Status::Warning,
                format!("could not read the repository creation templates: {error}"),
                Some(
                    "allow this caller ecr:DescribeRepositoryCreationTemplates, or read them \
                     yourself: aws ecr describe-repository-creation-templates"
                        .to_string(),
                ),
            )
        }
    };
    let applies = |wanted: &str| {
        templates
            .iter()
            .find(|template| template.for_cache && template.prefix == wanted)
    };
    match applies(prefix).or_else(|| applies(ROOT)) {
        None => finding(
            Status::Ok,
            format!(
                "no repository creation template applies to {prefix} (nor a ROOT one): the cache \
                 creates its repositories encrypted with AES256, with mutable tags, and without \
                 repository or lifecycle policy"
            ),
            Some(format!(
                "for a KMS key, tags or a lifecycle policy, create a template: aws ecr \
                 create-repository-creation-template --prefix {prefix} --applied-for \
                 PULL_THROUGH_CACHE --image-tag-mutability MUTABLE ..."
            )),
        ),
        Some(template) if template.tag_mutability.starts_with("IMMUTABLE") => finding(
            Status::Warning,
            format!(
                "repository creation template {} gives the cache repositories it creates \
                 {} tags: the cache cannot move a tag when it moves upstream, so each tag \
                 keeps its first image",
                template.prefix, template.tag_mutability
            ),
            Some(format!(
                "aws ecr update-repository-creation-template --prefix {} \
                 --image-tag-mutability MUTABLE",
                template.prefix
            )),
        ),
        Some(template) if template.needs_role && template.role.is_none() => finding(
            Status::Error,
            format!(
                "repository creation template {} sets a KMS key or resource tags ({}) but no \
                 repository creation role: ECR cannot create the cache repositories it applies \
                 to, so first pulls through {prefix} fail",
                template.prefix, template.encryption
            ),
            Some(format!(
                "create a role that ecr.amazonaws.com may assume, allowed ecr:CreateRepository, \
                 ecr:ReplicateImage, ecr:TagResource and, on the key, kms:CreateGrant, \
                 kms:RetireGrant and kms:DescribeKey; then aws ecr \
                 update-repository-creation-template --prefix {} --custom-role-arn ROLE_ARN",
                template.prefix
            )),
        ),
        Some(template) => finding(
            Status::Ok,
            format!(
                "repository creation template {} applies: {} tags, encrypted with {}",
                template.prefix, template.tag_mutability, template.encryption
            ),
            None,
        ),
    }
}

fn repositories(
    prefix: &str,
    prefixes: &[&str],
    repositories: &Repositories,
    images: &[PlannedImage],
) -> Vec<Finding> {
    let finding = |status, subject: &str, message: String, fix: Option<String>| Finding {
        check: Check::CacheRepository,
        status,
        subject: subject.to_string(),
        message,
        fix,
    };
    let belongs = |repository: &&Repository| match prefix {
        // ROOT caches at the top: every repository that no other rule's prefix holds.
        ROOT => !prefixes.iter().any(|other| {
            *other != ROOT
                && repository
                    .name
                    .strip_prefix(other)
                    .is_some_and(|rest| rest.starts_with('/'))
        }),
        _ => repository
            .name
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/')),
    };
    let cached: Vec<&Repository> = repositories.known.iter().filter(belongs).collect();
    let immutable: Vec<Finding> = cached
        .iter()
        .filter(|repository| repository.tag_mutability.starts_with("IMMUTABLE"))
        .map(|repository| {
            finding(
                Status::Warning,
                &repository.name,
                format!(
                    "cache repository {} has {} tags: its tags are not refreshed from upstream \
                     when they move",
                    repository.name, repository.tag_mutability
                ),
                Some(format!(
                    "aws ecr put-image-tag-mutability --repository-name {} \
                     --image-tag-mutability MUTABLE",
                    repository.name
                )),
            )
        })
        .collect();
    if !immutable.is_empty() {
        return immutable;
    }
    let described = images.iter().any(|image| {
        image
            .target
            .as_ref()
            .is_some_and(|target| target.rule_prefix == prefix)
    });
    let status = match &repositories.listing_error {
        None => Status::Ok,
        Some(_) if described => Status::Ok,
        Some(_) => Status::Warning,
    };
    let message = match (&repositories.listing_error, cached.len()) {
        (None, 0) => format!(
            "no cache repository under {} yet: each first pull creates one",
            under(prefix)
        ),
        (None, n) => format!(
            "{n} cache repositor{} under {}, all with mutable tags",
            if n == 1 { "y" } else { "ies" },
            under(prefix)
        ),
        (Some(error), n) if described => format!(
            "the registry's repositories could not be listed ({error}); of the images' cache \
             repositories under {}, {n} exist, all with mutable tags",
            under(prefix)
        ),
        (Some(error), _) => format!(
            "could not list the registry's repositories, so the cache repositories under {} \
             were not checked: {error}",
            under(prefix)
        ),
    };
    let fix = (status == Status::Warning).then(|| {
        "allow this caller ecr:DescribeRepositories on * (listing the registry needs it), or \
         name the images to check (IMAGE, --images-file)"
            .to_string()
    });
    vec![finding(status, prefix, message, fix)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::registry::Repositories;
    use crate::doctor::Report;

    fn caller() -> Caller {
        Caller {
            account: "123456789012".into(),
            arn: "arn:aws:iam::123456789012:user/ci".into(),
        }
    }

    fn facts(policy: Option<&str>, validations: Vec<Option<Fetched<Validation>>>) -> Facts {
        Facts {
            policy: Ok(policy.map(str::to_string)),
            registry_id: None,
            templates: Ok(vec![Template {
                prefix: "ROOT".into(),
                tag_mutability: "IMMUTABLE".into(),
                encryption: "AES256".into(),
                for_cache: true,
                needs_role: false,
                role: None,
            }]),
            repositories: Repositories {
                known: vec![
                    Repository {
                        name: "docker-hub/library/nginx".into(),
                        tag_mutability: "IMMUTABLE".into(),
                    },
                    Repository {
                        name: "ecr-public/docker/library/redis".into(),
                        tag_mutability: "MUTABLE".into(),
                    },
                ],
                listing_error: None,
            },
            validations,
        }
    }

    fn rules() -> Rules {
        Rules::new(vec![
            Rule::parse("docker-hub=registry-1.docker.io").unwrap().with_credential(Credential::Given {
                arn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/docker-hub-AbC123".into(),
            }),
            Rule::parse("ecr-public=public.ecr.aws").unwrap(),
        ])
        .unwrap()
    }

    fn planned(images: &[&str], rules: &Rules) -> Vec<PlannedImage> {
        let images: Vec<String> = images.iter().map(|s| s.to_string()).collect();
        crate::plan::plan(&images, rules)
    }

    const NARROW: &str = r#"{"Version": "2012-10-17", "Statement": [{"Sid": "PullThroughCache",
        "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
        "Action": ["ecr:CreateRepository", "ecr:BatchImportUpstreamImage"],
        "Resource": "arn:aws:ecr:us-east-1:123456789012:repository/ecr-public/docker/*"}]}"#;

    fn find<'a>(findings: &'a [Finding], check: Check, subject: &str) -> &'a Finding {
        findings
            .iter()
            .find(|f| f.check == check && f.subject == subject)
            .unwrap_or_else(|| panic!("no {check:?} finding for {subject}: {findings:#?}"))
    }

    #[test]
    fn every_check_makes_its_findings() {
        let rules = rules();
        let invalid = Validation {
            valid: false,
            failure: Some("the access token has expired".into()),
        };
        let images = planned(
            &[
                "public.ecr.aws/nginx/nginx:1.27",
                "public.ecr.aws/docker/library/redis:7",
                "quay.io/prometheus/node-exporter:v1.8.2",
            ],
            &rules,
        );
        let findings = judge(
            &facts(Some(NARROW), vec![Some(Ok(invalid)), None]),
            &caller(),
            "us-east-1",
            &rules,
            &images,
        );

        let credential = find(&findings, Check::UpstreamCredential, "docker-hub");
        assert_eq!(credential.status, Status::Error);
        assert!(credential.message.contains("the access token has expired"));
        let fix = credential.fix.as_deref().unwrap();
        assert!(
            fix.contains("secret ecr-pullthroughcache/docker-hub,")
                && fix.contains("username and accessToken"),
            "{fix}"
        );
        let given = find(&findings, Check::UpstreamCredential, "ecr-public");
        assert_eq!(given.status, Status::Ok);
        assert!(given.message.starts_with("not validated"));

        let policy = find(&findings, Check::RegistryPolicy, "ecr-public");
        assert_eq!(policy.status, Status::Warning);
        assert!(
            policy
                .message
                .contains("only on repository/ecr-public/docker/*")
                && policy.message.contains("does not exist"),
            "{}",
            policy.message
        );
        let nginx = find(
            &findings,
            Check::RegistryPolicy,
            "public.ecr.aws/nginx/nginx:1.27",
        );
        assert_eq!(nginx.status, Status::Warning);
        assert!(
            nginx.message.starts_with(
                "ecr-public/nginx/nginx will fail its first pull with \"repository \
                 ecr-public/nginx/nginx does not exist\""
            ),
            "{}",
            nginx.message
        );
        let redis = find(
            &findings,
            Check::RegistryPolicy,
            "public.ecr.aws/docker/library/redis:7",
        );
        assert_eq!(redis.status, Status::Ok);
        assert_eq!(
            find(&findings, Check::RegistryPolicy, "docker-hub").status,
            Status::Ok,
            "nothing granted under docker-hub/: IAM decides"
        );

        let template = find(&findings, Check::CreationTemplate, "docker-hub");
        assert_eq!(template.status, Status::Warning);
        assert!(template
            .message
            .contains("repository creation template ROOT"));
        let immutable = find(
            &findings,
            Check::CacheRepository,
            "docker-hub/library/nginx",
        );
        assert_eq!(immutable.status, Status::Warning);
        let mutable = find(&findings, Check::CacheRepository, "ecr-public");
        assert_eq!(
            (mutable.status, mutable.message.as_str()),
            (
                Status::Ok,
                "1 cache repository under ecr-public/, all with mutable tags"
            )
        );
        let unplanned = find(
            &findings,
            Check::Image,
            "quay.io/prometheus/node-exporter:v1.8.2",
        );
        assert_eq!(unplanned.status, Status::Error);
        assert!(unplanned
            .message
            .contains("no pull-through cache rule for registry quay.io"));
    }

    #[test]
    fn no_policy_and_an_unparsable_policy() {
        let rules = rules();
        let findings = judge(
            &facts(None, vec![None, None]),
            &caller(),
            "us-east-1",
            &rules,
            &[],
        );
        let none = find(&findings, Check::RegistryPolicy, "ecr-public");
        assert_eq!(none.status, Status::Ok);
        assert!(none
            .message
            .starts_with("the registry has no permissions policy"));

        let findings = judge(
            &facts(Some("{not json"), vec![None, None]),
            &caller(),
            "us-east-1",
            &rules,
            &[],
        );
        let broken = find(&findings, Check::RegistryPolicy, "ecr-public");
        assert_eq!(broken.status, Status::Error);
        assert!(broken
            .message
            .starts_with("the registry permissions policy is not valid JSON ("));
    }

    #[test]
    fn the_json_document_has_caller_summary_and_findings() {
        let finding = Finding {
            check: Check::CacheRepository,
            status: Status::Warning,
            subject: "docker-hub/library/nginx".into(),
            message: "m".into(),
            fix: None,
        };
        let report = Report::new(caller(), "us-east-1".into(), vec![finding]);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "caller": {"account": "123456789012", "arn": "arn:aws:iam::123456789012:user/ci"},
                "region": "us-east-1",
                "summary": {"ok": 0, "warning": 1, "error": 0},
                "findings": [{"check": "cache-repository", "status": "warning",
                              "subject": "docker-hub/library/nginx", "message": "m", "fix": null}]
            })
        );
    }

    #[test]
    fn secret_names_lose_their_random_suffix() {
        assert_eq!(
            secret_name(
                "arn:aws:secretsmanager:us-east-1:1:secret:ecr-pullthroughcache/hub-AbC123"
            ),
            Some("ecr-pullthroughcache/hub")
        );
        assert_eq!(
            secret_name("arn:aws:secretsmanager:us-east-1:1:secret:ecr-pullthroughcache/hub"),
            Some("ecr-pullthroughcache/hub")
        );
        assert_eq!(secret_name("arn:aws:iam::1:role/upstream"), None);
    }

    #[test]
    fn a_kms_template_without_a_creation_role_is_an_error() {
        let kms = |role: Option<&str>| Template {
            prefix: "docker-hub".into(),
            tag_mutability: "MUTABLE".into(),
            encryption: "KMS with key arn:aws:kms:us-east-1:123456789012:key/k".into(),
            for_cache: true,
            needs_role: true,
            role: role.map(str::to_string),
        };
        let judged = |template: Template| {
            let mut facts = facts(None, vec![None, None]);
            facts.templates = Ok(vec![template]);
            let findings = judge(&facts, &caller(), "us-east-1", &rules(), &[]);
            find(&findings, Check::CreationTemplate, "docker-hub").clone()
        };
        let without = judged(kms(None));
        assert_eq!(without.status, Status::Error);
        assert!(
            without.message.contains("no repository creation role"),
            "{}",
            without.message
        );
        assert!(without.fix.unwrap().contains("--custom-role-arn"));
        let with = judged(kms(Some("arn:aws:iam::123456789012:role/ecr-create")));
        assert_eq!(with.status, Status::Ok);
    }
}
