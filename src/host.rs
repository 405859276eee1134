//! Registry hosts and what they mean: Docker Hub's names and the host of its
//! API, and the host of a private ECR registry.

/// The name Docker prints for Docker Hub (`docker.io/library/nginx`).
pub const DOCKER_HUB_DOMAIN: &str = "docker.io";
/// An older name of Docker Hub, which Docker reads as `docker.io`.
pub const LEGACY_DOCKER_HUB_DOMAIN: &str = "index.docker.io";
/// The host that serves Docker Hub's registry API, and the upstream URL of a
/// pull-through cache rule for Docker Hub.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

/// Hosts that all mean Docker Hub.
pub fn is_docker_hub_host(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    matches!(
        host.as_str(),
        DOCKER_HUB_DOMAIN | LEGACY_DOCKER_HUB_DOMAIN | DOCKER_HUB_API_HOST
    )
}

/// The host that serves `registry`'s API, as rules and endpoints name it:
/// Docker Hub's names are one host, and host names compare without regard to case.
pub fn api_host(registry: &str) -> String {
    if is_docker_hub_host(registry) {
        DOCKER_HUB_API_HOST.to_string()
    } else {
        registry.to_ascii_lowercase()
    }
}

/// Whether `host` is a private ECR registry (`<account>.dkr.ecr.<region>.amazonaws.com`).
/// An image that ECS pulls from such a host under a rule's prefix goes through
/// the cache; one it pulls from any other host never does.
pub fn is_private_ecr_host(host: &str) -> bool {
    private_ecr_registry(&host.to_ascii_lowercase()).is_some()
}

/// The account and Region of a private ECR registry host,
/// `<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`.
pub fn private_ecr_registry(host: &str) -> Option<(&str, &str)> {
    let mut parts = host.split('.');
    let account = parts.next()?;
    let rest: Vec<&str> = parts.collect();
    let is_ecr = account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && rest.len() >= 4
        && rest[0] == "dkr"
        && matches!(rest[1], "ecr" | "ecr-fips")
        && matches!(
            &rest[3..],
            ["amazonaws", "com"] | ["amazonaws", "com", "cn"]
        );
    is_ecr.then(|| (account, rest[2]))
}

pub fn private_ecr_host(account: &str, region: &str) -> String {
    // The China Regions have their own domain.
    let domain = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("{account}.dkr.ecr.{region}.{domain}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_has_three_names_and_one_api_host() {
        for name in ["docker.io", "index.docker.io", "Registry-1.Docker.io"] {
            assert!(is_docker_hub_host(name), "{name}");
            assert_eq!(api_host(name), "registry-1.docker.io");
        }
        assert_eq!(api_host("Quay.io"), "quay.io");
    }

    #[test]
    fn private_ecr_hosts_name_their_account_and_region() {
        assert_eq!(
            private_ecr_registry("123456789012.dkr.ecr.eu-west-1.amazonaws.com"),
            Some(("123456789012", "eu-west-1"))
        );
        assert_eq!(
            private_ecr_registry("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com"),
            Some(("123456789012", "us-east-1"))
        );
        assert!(is_private_ecr_host(
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"
        ));
        assert!(!is_private_ecr_host("public.ecr.aws"));
        assert!(!is_private_ecr_host(
            "12345.dkr.ecr.us-east-1.amazonaws.com"
        ));
        assert_eq!(
            private_ecr_host("123456789012", "cn-north-1"),
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"
        );
    }
}
