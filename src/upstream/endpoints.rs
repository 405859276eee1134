//! Where each upstream registry's API is reached: `https://<registry>`, unless
//! an override (`REGISTRY=URL`) sends it elsewhere, such as to a mirror, a
//! proxy or a test server.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use reqwest::Url;
use thiserror::Error;

use crate::host;
use crate::reference::is_host_and_port;

const EXPECTED: &str =
    "expected REGISTRY=URL, e.g. quay.io=https://mirror.example.com/quay.io or registry-1.docker.io=http://127.0.0.1:5001";

/// One override: the registry's API is at `url` (API calls go to `{url}/v2/…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub registry: String,
    pub url: Url,
}

/// The base URL of each upstream registry. `Default` has no overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoints {
    overrides: HashMap<String, Endpoint>,
}

/// Why an override or a registry name is refused; each names the item.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EndpointError {
    #[error("invalid upstream endpoint {item:?}: {EXPECTED}")]
    Form { item: String },
    #[error("invalid upstream endpoint {item:?}: {registry:?} is not a registry host[:port]; {EXPECTED}")]
    Registry { item: String, registry: String },
    #[error("invalid upstream endpoint {item:?}: {reason}; {EXPECTED}")]
    Url { item: String, reason: String },
    #[error("upstream endpoints {first} and {second} are for the same registry: give each registry one URL (docker.io, index.docker.io and registry-1.docker.io are all Docker Hub)")]
    Duplicate { first: String, second: String },
    #[error("{0:?} is not a registry host[:port]")]
    NotARegistry(String),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.registry, self.url)
    }
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(item: &str) -> Result<Endpoint, EndpointError> {
        let item = item.trim();
        let Some((registry, url)) = item.split_once('=') else {
            return Err(EndpointError::Form { item: item.into() });
        };
        let (registry, url) = (registry.trim(), url.trim());
        if registry.is_empty() || url.is_empty() {
            return Err(EndpointError::Form { item: item.into() });
        }
        if !is_host_and_port(registry) {
            return Err(EndpointError::Registry {
                item: item.into(),
                registry: registry.into(),
            });
        }
        let invalid = |reason: &str| EndpointError::Url {
            item: item.into(),
            reason: reason.into(),
        };
        let url = Url::parse(url)
            .map_err(|error| invalid(&format!("the URL does not parse ({error})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the URL must be http:// or https://"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("the URL must not have a query or a fragment"));
        }
        // URLs are logged and put in error messages, this one included.
        if !url.username().is_empty() || url.password().is_some() {
            let mut shown = url.clone();
            let _ = shown.set_password(None);
            let _ = shown.set_username("redacted");
            return Err(EndpointError::Url {
                item: format!("{registry}={shown}"),
                reason: "the URL must not hold credentials (they come from the rule's secret)"
                    .into(),
            });
        }
        Ok(Endpoint {
            registry: registry.into(),
            url,
        })
    }
}

impl Endpoints {
    /// The overrides in `items`, each `REGISTRY=URL`; blank items are skipped,
    /// so that a comma-separated setting can be given as `value.split(',')`.
    pub fn parse<I, S>(items: I) -> Result<Endpoints, EndpointError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let endpoints = items
            .into_iter()
            .filter(|item| !item.as_ref().trim().is_empty())
            .map(|item| item.as_ref().parse())
            .collect::<Result<Vec<Endpoint>, _>>()?;
        Endpoints::new(endpoints)
    }

    /// The given overrides; two for one registry are an error.
    pub fn new(endpoints: impl IntoIterator<Item = Endpoint>) -> Result<Endpoints, EndpointError> {
        let mut overrides: HashMap<String, Endpoint> = HashMap::new();
        for endpoint in endpoints {
            let key = host::api_host(&endpoint.registry);
            if let Some(first) = overrides.get(&key) {
                return Err(EndpointError::Duplicate {
                    first: first.to_string(),
                    second: endpoint.to_string(),
                });
            }
            overrides.insert(key, endpoint);
        }
        Ok(Endpoints { overrides })
    }

    /// Where the API of `registry` (as a reference names it: `docker.io`,
    /// `quay.io`, `localhost:5000`) is: its override, or `https://<registry>`.
    pub fn base_url(&self, registry: &str) -> Result<Url, EndpointError> {
        if !is_host_and_port(registry) {
            return Err(EndpointError::NotARegistry(registry.into()));
        }
        let host = host::api_host(registry);
        match self.overrides.get(&host) {
            Some(endpoint) => Ok(endpoint.url.clone()),
            None => Url::parse(&format!("https://{host}"))
                .map_err(|_| EndpointError::NotARegistry(registry.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(items: &[&str]) -> Endpoints {
        Endpoints::parse(items).unwrap()
    }

    fn base(endpoints: &Endpoints, registry: &str) -> String {
        endpoints.base_url(registry).unwrap().to_string()
    }

    #[test]
    fn without_an_override_a_registry_is_reached_over_https() {
        let none = Endpoints::default();
        assert_eq!(base(&none, "quay.io"), "https://quay.io/");
        assert_eq!(base(&none, "localhost:5000"), "https://localhost:5000/");
        assert_eq!(base(&none, "[::1]:5000"), "https://[::1]:5000/");
    }

    #[test]
    fn docker_hub_has_three_names_and_one_api_host() {
        let none = Endpoints::default();
        for name in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
            assert_eq!(base(&none, name), "https://registry-1.docker.io/", "{name}");
        }
        for given in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
            let overridden = endpoints(&[&format!("{given}=http://127.0.0.1:5001")]);
            for name in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
                assert_eq!(
                    base(&overridden, name),
                    "http://127.0.0.1:5001/",
                    "{given} overrides {name}"
                );
            }
            assert_eq!(base(&overridden, "quay.io"), "https://quay.io/");
        }
    }

    #[test]
    fn an_override_keeps_its_path() {
        let overridden = endpoints(&[
            "quay.io=http://127.0.0.1:5000/upstream/quay.io",
            " ghcr.io = https://mirror.example.com ",
            "",
        ]);
        assert_eq!(
            base(&overridden, "quay.io"),
            "http://127.0.0.1:5000/upstream/quay.io"
        );
        assert_eq!(base(&overridden, "GHCR.io"), "https://mirror.example.com/");
        assert_eq!(
            base(&overridden, "docker.io"),
            "https://registry-1.docker.io/"
        );
    }

    #[test]
    fn a_comma_separated_setting_splits_into_items() {
        let setting = "quay.io=http://127.0.0.1:5000,docker.io=http://127.0.0.1:5001,";
        let overridden = Endpoints::parse(setting.split(',')).unwrap();
        assert_eq!(base(&overridden, "quay.io"), "http://127.0.0.1:5000/");
        assert_eq!(base(&overridden, "docker.io"), "http://127.0.0.1:5001/");
        assert_eq!(
            Endpoints::parse("".split(',')).unwrap(),
            Endpoints::default()
        );
    }

    #[test]
    fn a_bad_item_is_named_with_the_expected_form() {
        for item in [
            "quay.io",
            "=http://127.0.0.1",
            "quay.io=",
            "quay.io/x=http://127.0.0.1",
            "quay.io=127.0.0.1:5000",
            "quay.io=ftp://127.0.0.1",
            "quay.io=http://127.0.0.1/?x=1",
            "quay.io=http://user:pass@127.0.0.1",
        ] {
            let error = item.parse::<Endpoint>().unwrap_err().to_string();
            assert!(error.contains("expected REGISTRY=URL"), "{error}");
            if item.contains("pass@") {
                assert!(
                    error.contains("quay.io=http://redacted@127.0.0.1/"),
                    "{error}"
                );
                assert!(!error.contains("pass"), "{error}");
            } else {
                assert!(error.contains(&format!("{item:?}")), "{error}");
            }
        }
        let scheme = "quay.io=ftp://h".parse::<Endpoint>().unwrap_err();
        assert!(
            scheme.to_string().contains("http:// or https://"),
            "{scheme}"
        );
    }

    #[test]
    fn a_registry_given_twice_is_an_error() {
        let error = Endpoints::parse(["quay.io=http://a", "QUAY.IO=http://b"]).unwrap_err();
        assert!(matches!(error, EndpointError::Duplicate { .. }), "{error}");
        let error =
            Endpoints::parse(["docker.io=http://a", "registry-1.docker.io=http://b"]).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("docker.io=http://a/")
                && message.contains("registry-1.docker.io=http://b/"),
            "{message}"
        );
    }

    #[test]
    fn base_url_refuses_what_is_not_a_registry() {
        let none = Endpoints::default();
        for registry in ["", "quay.io/x", "a b", "h:99999"] {
            assert!(none.base_url(registry).is_err(), "{registry:?}");
        }
    }
}
