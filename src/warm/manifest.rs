//! Manifests as ECR returns them: a multi-arch index (Docker manifest list or
//! OCI index) names one image manifest per platform; an image manifest names
//! its config blob and layers.

use std::collections::HashMap;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use super::platform::Platform;

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
/// BuildKit's annotation on the provenance and SBOM entries of an index.
const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
const UNKNOWN: &str = "unknown";

/// What a manifest points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    Index(Vec<IndexEntry>),
    Image(Blobs),
}

/// One manifest named by an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub platform: Option<Platform>,
    pub digest: String,
    /// A platform a container can run on: not an attestation, not `unknown/unknown`.
    pub runnable: bool,
}

/// The blobs of one image manifest: its config, then its layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blobs {
    pub config: String,
    pub layers: Vec<String>,
}

impl Blobs {
    /// Every blob digest, config first, each once.
    pub fn digests(&self) -> Vec<String> {
        let mut digests = vec![self.config.clone()];
        for layer in &self.layers {
            if !digests.contains(layer) {
                digests.push(layer.clone());
            }
        }
        digests
    }
}

/// Reads a manifest. `media_type` is the type ECR reported, if any; the
/// document's own `mediaType`, or its shape, decides otherwise.
pub fn parse(body: &str, media_type: Option<&str>) -> Result<Manifest, String> {
    let document: serde_json::Value =
        serde_json::from_str(body).map_err(|error| format!("not JSON: {error}"))?;
    let declared = media_type.or_else(|| document.get("mediaType").and_then(|t| t.as_str()));
    let is_index = match declared {
        Some(media_type) => INDEX_TYPES.contains(&media_type),
        None => document.get("manifests").is_some(),
    };
    if is_index {
        let index: ImageIndex = serde_json::from_value(document)
            .map_err(|error| format!("not a valid image index: {error}"))?;
        Ok(Manifest::Index(
            index.manifests().iter().map(entry).collect(),
        ))
    } else {
        let manifest: ImageManifest = serde_json::from_value(document)
            .map_err(|error| format!("not a valid image manifest: {error}"))?;
        Ok(Manifest::Image(Blobs {
            config: manifest.config().digest().to_string(),
            layers: manifest
                .layers()
                .iter()
                .map(|layer| layer.digest().to_string())
                .collect(),
        }))
    }
}

fn entry(descriptor: &Descriptor) -> IndexEntry {
    let platform = descriptor.platform().as_ref().map(|p| Platform {
        os: p.os().to_string(),
        architecture: p.architecture().to_string(),
        variant: p.variant().clone(),
    });
    let attestation = descriptor
        .annotations()
        .as_ref()
        .and_then(|annotations: &HashMap<String, String>| annotations.get(REFERENCE_TYPE))
        .is_some();
    let unknown = platform
        .as_ref()
        .is_some_and(|p| p.os == UNKNOWN || p.architecture == UNKNOWN);
    IndexEntry {
        platform,
        digest: descriptor.digest().to_string(),
        runnable: !attestation && !unknown,
    }
}

/// The entries of an index to warm: every wanted platform's, or else every
/// runnable one. A wanted platform the index lacks is an error that names the
/// platforms it has.
pub fn select(
    entries: &[IndexEntry],
    wanted: &[Platform],
) -> Vec<Result<IndexEntry, (Platform, String)>> {
    if wanted.is_empty() {
        return entries
            .iter()
            .filter(|entry| entry.runnable)
            .cloned()
            .map(Ok)
            .collect();
    }
    wanted
        .iter()
        .map(|wanted| {
            entries
                .iter()
                .find(|entry| {
                    entry.runnable && entry.platform.as_ref().is_some_and(|p| p.satisfies(wanted))
                })
                .cloned()
                .ok_or_else(|| (wanted.clone(), missing(wanted, entries)))
        })
        .collect()
}

fn missing(wanted: &Platform, entries: &[IndexEntry]) -> String {
    let available: Vec<String> = entries
        .iter()
        .filter(|entry| entry.runnable)
        .filter_map(|entry| entry.platform.as_ref().map(Platform::to_string))
        .collect();
    let available = match available.is_empty() {
        true => "no runnable platform".to_string(),
        false => available.join(", "),
    };
    format!("the image index has no {wanted} manifest; it has {available}")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub fn digest(n: u32) -> String {
        format!("sha256:{n:064x}")
    }

    /// An OCI image manifest with a config and the given layers.
    pub fn image_manifest(config: &str, layers: &[String]) -> String {
        json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 100},
            "layers": layers.iter().map(|layer| json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": 1000
            })).collect::<Vec<_>>(),
        })
        .to_string()
    }

    /// An index of `(os/arch[/variant], digest)` entries, plus BuildKit's attestation of the first.
    pub fn index(media_type: &str, platforms: &[(&str, &str)]) -> String {
        let mut manifests: Vec<serde_json::Value> = platforms
            .iter()
            .map(|(platform, digest)| {
                let parts: Vec<&str> = platform.split('/').collect();
                let mut platform = json!({"os": parts[0], "architecture": parts[1]});
                if let Some(variant) = parts.get(2) {
                    platform["variant"] = json!(variant);
                }
                json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": digest, "size": 500, "platform": platform})
            })
            .collect();
        manifests.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(999), "size": 500,
            "platform": {"os": "unknown", "architecture": "unknown"},
            "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                            "vnd.docker.reference.digest": platforms[0].1}
        }));
        json!({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests}).to_string()
    }

    fn platform(text: &str) -> Platform {
        text.parse().unwrap()
    }

    #[test]
    fn an_image_manifest_names_its_config_and_layers() {
        let body = image_manifest(&digest(1), &[digest(2), digest(3), digest(2)]);
        let Ok(Manifest::Image(blobs)) = parse(&body, None) else {
            panic!("an image manifest")
        };
        assert_eq!(blobs.digests(), [digest(1), digest(2), digest(3)]);
    }

    #[test]
    fn oci_indexes_and_docker_manifest_lists_name_their_platforms() {
        for media_type in INDEX_TYPES {
            let body = index(
                media_type,
                &[("linux/amd64", &digest(1)), ("linux/arm64/v8", &digest(2))],
            );
            for declared in [None, Some(media_type)] {
                let Ok(Manifest::Index(entries)) = parse(&body, declared) else {
                    panic!("an index: {media_type}")
                };
                let runnable: Vec<(String, bool)> = entries
                    .iter()
                    .map(|e| (e.platform.as_ref().unwrap().to_string(), e.runnable))
                    .collect();
                assert_eq!(
                    runnable,
                    [
                        ("linux/amd64".to_string(), true),
                        ("linux/arm64/v8".to_string(), true),
                        ("unknown/unknown".to_string(), false)
                    ]
                );
            }
        }
    }

    #[test]
    fn by_default_every_runnable_platform_is_selected() {
        let body = index(
            INDEX_TYPES[0],
            &[("linux/amd64", &digest(1)), ("linux/arm64/v8", &digest(2))],
        );
        let Ok(Manifest::Index(entries)) = parse(&body, None) else {
            panic!()
        };
        let selected: Vec<String> = select(&entries, &[])
            .into_iter()
            .map(|e| e.unwrap().digest)
            .collect();
        assert_eq!(selected, [digest(1), digest(2)]);

        let wanted = [platform("linux/arm64"), platform("linux/s390x")];
        let chosen = select(&entries, &wanted);
        assert_eq!(chosen[0].as_ref().unwrap().digest, digest(2));
        let (missing, message) = chosen[1].as_ref().unwrap_err();
        assert_eq!(missing, &platform("linux/s390x"));
        assert_eq!(
            message,
            "the image index has no linux/s390x manifest; it has linux/amd64, linux/arm64/v8"
        );
    }

    #[test]
    fn unreadable_manifests_say_why() {
        assert!(parse("{", None).unwrap_err().starts_with("not JSON"));
        assert!(parse("{}", None)
            .unwrap_err()
            .starts_with("not a valid image manifest"));
        assert!(parse(r#"{"manifests": 3}"#, None)
            .unwrap_err()
            .starts_with("not a valid image index"));
    }
}
