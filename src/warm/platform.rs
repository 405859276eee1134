//! Platforms: how `--platform` is written, and which entries of an index are
//! wanted.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// An image platform, `OS/ARCH[/VARIANT]` as Docker writes it (`linux/arm64/v8`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "invalid platform {0:?}: write OS/ARCH or OS/ARCH/VARIANT, e.g. linux/amd64 or linux/arm64/v8"
)]
pub struct PlatformError(pub String);

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(text: &str) -> Result<Platform, PlatformError> {
        let invalid = || PlatformError(text.to_string());
        let parts: Vec<&str> = text.trim().split('/').collect();
        let valid_part = |part: &&str| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(valid_part) {
            return Err(invalid());
        }
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            architecture: parts[1].to_ascii_lowercase(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// Whether an index entry of this platform satisfies a wanted platform.
    /// A wanted platform without a variant takes any variant; `arm64` without
    /// a variant is `arm64/v8`, as Docker normalizes it.
    pub fn satisfies(&self, wanted: &Platform) -> bool {
        if self.os != wanted.os || self.architecture != wanted.architecture {
            return false;
        }
        match &wanted.variant {
            None => true,
            Some(variant) => self.normalized_variant().as_deref() == Some(variant.as_str()),
        }
    }

    fn normalized_variant(&self) -> Option<String> {
        match (&self.variant, self.architecture.as_str()) {
            (None, "arm64") => Some("v8".to_string()),
            (variant, _) => variant.clone(),
        }
    }
}

/// Parses a comma separated list (`WARM_PLATFORMS`).
pub fn parse_list(text: &str) -> Result<Vec<Platform>, PlatformError> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(Platform::from_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(text: &str) -> Platform {
        text.parse().unwrap()
    }

    #[test]
    fn platforms_read_and_print_as_docker_writes_them() {
        for text in ["linux/amd64", "linux/arm64/v8", "windows/amd64"] {
            assert_eq!(platform(text).to_string(), text);
        }
        assert_eq!(platform(" Linux/AMD64 ").to_string(), "linux/amd64");
        for bad in [
            "linux",
            "linux/",
            "/amd64",
            "linux/arm/v7/x",
            "linux/am d64",
            "",
        ] {
            let error = bad.parse::<Platform>().unwrap_err().to_string();
            assert!(error.contains("OS/ARCH"), "{bad}: {error}");
        }
    }

    #[test]
    fn a_wanted_platform_without_variant_takes_any_variant() {
        assert!(platform("linux/arm64/v8").satisfies(&platform("linux/arm64")));
        assert!(platform("linux/arm64").satisfies(&platform("linux/arm64/v8")));
        assert!(!platform("linux/arm/v6").satisfies(&platform("linux/arm/v7")));
        assert!(!platform("linux/amd64").satisfies(&platform("linux/arm64")));
        assert!(!platform("windows/amd64").satisfies(&platform("linux/amd64")));
    }

    #[test]
    fn lists_are_comma_separated() {
        assert_eq!(
            parse_list("linux/amd64, linux/arm64/v8,").unwrap(),
            [platform("linux/amd64"), platform("linux/arm64/v8")]
        );
        assert_eq!(parse_list("").unwrap(), []);
        assert!(parse_list("linux/amd64,arm64").is_err());
    }
}
