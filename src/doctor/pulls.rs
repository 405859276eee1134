//! What each Docker Hub rule's upstream has left of its pull limit: one HEAD
//! of a manifest, which spends no pull, read for its ratelimit headers.

use crate::host;
use crate::plan::PlannedImage;
use crate::reference::Reference;
use crate::rules::Rules;
use crate::upstream::resolver::{upstream_repository, Resolver};

use super::report::{Check, Finding, Status};

/// Docker's own repository for reading the limit, when the list names no
/// image of the rule.
const PROBE: &str = "docker.io/ratelimitpreview/test:latest";

/// One finding per rule whose upstream is Docker Hub and says what is left;
/// `reserve` is the percentage the warm keeps for other users.
pub async fn left(
    resolver: &Resolver,
    rules: &Rules,
    images: &[PlannedImage],
    reserve: u8,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for rule in rules.iter() {
        let of_rule = images.iter().find_map(|image| {
            let reference = image.reference.as_ref()?;
            let target = image.target.as_ref()?;
            (target.rule_prefix == rule.ecr_prefix() && reference.tag().is_some())
                .then(|| reference.clone())
        });
        let Some(reference) = of_rule.or_else(|| probe_of(rule.ecr_prefix(), rules)) else {
            continue;
        };
        let (registry, _) = upstream_repository(&reference, rules);
        if !host::is_docker_hub_host(&registry) {
            continue;
        }
        let login = match resolver.login_for(&reference, rules, None).await {
            Ok(login) => login,
            Err(_) => continue,
        };
        let tag = reference.tag().unwrap_or("latest");
        let head = resolver
            .head_of(&reference, tag, login.as_deref(), rules, None)
            .await;
        let Some(pulls) = head.ok().and_then(|head| head.rate_limit) else {
            continue;
        };
        let window = pulls
            .window_seconds
            .map_or(String::new(), |w| format!(" {} h", w / 3600));
        let kept = (pulls.limit * u64::from(reserve)).div_ceil(100);
        let low = pulls.remaining <= kept;
        findings.push(Finding {
            check: Check::UpstreamPulls,
            status: if low { Status::Warning } else { Status::Ok },
            subject: rule.ecr_prefix().to_string(),
            message: format!(
                "{} of {} pulls left in the upstream's{window} window",
                pulls.remaining, pulls.limit
            ),
            fix: low.then(|| {
                format!(
                    "no more than the reserve of {reserve}% ({kept} pulls) is left: imports through \
                     {} wait until pulls come back as the window slides; give the rule a \
                     credential with a higher limit, or warm fewer new images at once",
                    rule.ecr_prefix()
                )
            }),
        });
    }
    findings
}

/// Docker's probe repository, when it maps through this rule.
fn probe_of(prefix: &str, rules: &Rules) -> Option<Reference> {
    let probe = Reference::parse_normalized(PROBE).ok()?;
    let mapping = rules.map(&probe).ok()?;
    (mapping.rule.ecr_prefix() == prefix).then_some(probe)
}
