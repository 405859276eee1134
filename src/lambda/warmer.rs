//! What every invocation uses: the settings, the rules and the clients, made
//! once at init.

use std::time::Duration;

use aws_config::SdkConfig;

use crate::discovery;
use crate::pipeline::Pipeline;
use crate::rules::{RuleError, Rules};
use crate::upstream::credential::Credentials;
use crate::upstream::resolver::Resolver;
use crate::upstream::tags::TagLister;
use crate::warm::settings::WarmSettings;

use super::environment::Settings;

/// How long each of ECR's answers at init may take: Lambda gives the whole
/// init 10 seconds, and a start that hangs is retried from the beginning.
const INIT_CALLS: Duration = Duration::from_secs(3);
/// How long the registry checks (`WARM_DOCTOR`) may take at init: Lambda
/// gives the whole init 10 seconds.
const DOCTOR_AT_INIT: Duration = Duration::from_secs(5);

pub struct Warmer {
    pub settings: Settings,
    pub rules: Rules,
    pub ecr: aws_sdk_ecr::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
    pub ecs: aws_sdk_ecs::Client,
    /// Lists selectors' tags upstream.
    pub resolver: Resolver,
}

impl Warmer {
    /// Reads the settings, builds the clients and reads the rules (unless
    /// `WARM_RULES` gives them).
    pub async fn init() -> Result<Warmer, lambda_runtime::Error> {
        let settings = Settings::from_env(|name| std::env::var(name).ok())?;
        let config = crate::aws::load_config(None).await;
        Warmer::new(settings, &config).await
    }

    /// The function with these settings and this AWS configuration, as at init.
    pub async fn new(
        settings: Settings,
        config: &SdkConfig,
    ) -> Result<Warmer, lambda_runtime::Error> {
        let config = config.clone();
        let ecr = aws_sdk_ecr::Client::new(&config);
        let rules = match &settings.rules {
            Some(rules) => rules.clone(),
            None => tokio::time::timeout(INIT_CALLS, discovery::rules(&ecr))
                .await
                .map_err(|_| {
                    RuleError::Discovery(format!("no answer within {}s", INIT_CALLS.as_secs()))
                })??,
        };
        let region = config.region().map(ToString::to_string).unwrap_or_default();
        let own = discovery::for_caller(rules.clone(), &ecr, &region);
        let rules = match tokio::time::timeout(INIT_CALLS, own).await {
            Ok(rules) => rules,
            Err(_) => {
                tracing::info!(
                    limit_s = INIT_CALLS.as_secs(),
                    "the caller's account is unknown (ecr:DescribeRegistry did not answer in \
                     time); references to private registries are checked for their Region only"
                );
                rules.with_own_region(&region)
            }
        };
        if settings.doctor {
            let checks = crate::doctor::log_at_init(&config, &ecr, &rules, &settings.images);
            if tokio::time::timeout(DOCTOR_AT_INIT, checks).await.is_err() {
                tracing::warn!(
                    limit_s = DOCTOR_AT_INIT.as_secs(),
                    "the registry checks (WARM_DOCTOR) did not finish in time; the function starts without them"
                );
            }
        }
        tracing::info!(
            images = settings.images.len(),
            rules = rules.iter().count(),
            "configured"
        );
        Ok(Warmer {
            sqs: crate::aws::engine_sqs(&config),
            ecr: crate::aws::engine_ecr(&config),
            s3: aws_sdk_s3::Client::new(&config),
            ecs: aws_sdk_ecs::Client::new(&config),
            resolver: Resolver::new(
                TagLister::new(settings.upstream_endpoints.clone()),
                Credentials::new(Some(aws_sdk_secretsmanager::Client::new(&config))),
            ),
            settings,
            rules,
        })
    }

    /// The pipeline, with the warm's settings of this invocation.
    pub fn pipeline<'a>(&'a self, settings: &'a WarmSettings) -> Pipeline<'a> {
        Pipeline {
            rules: &self.rules,
            resolver: &self.resolver,
            settings,
        }
    }
}
