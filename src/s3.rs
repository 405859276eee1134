//! A list of images kept in an S3 object (`WARM_IMAGES_S3_URI`), read at
//! every invocation so that editing the object changes the next run
//! without a deploy.

use std::fmt;
use std::str::FromStr;
use std::time::Instant;

use thiserror::Error;

use crate::list::{self, ListEntry};

/// `s3://BUCKET/KEY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectUri {
    pub bucket: String,
    pub key: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid S3 URI {0:?}: write s3://BUCKET/KEY, e.g. s3://platform-config/warm-images.txt")]
pub struct UriError(pub String);

impl FromStr for ObjectUri {
    type Err = UriError;

    fn from_str(text: &str) -> Result<ObjectUri, UriError> {
        let invalid = || UriError(text.to_string());
        let rest = text.trim().strip_prefix("s3://").ok_or_else(invalid)?;
        let (bucket, key) = rest.split_once('/').ok_or_else(invalid)?;
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !bucket_ok || key.is_empty() || key.ends_with('/') {
            return Err(invalid());
        }
        Ok(ObjectUri {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }
}

impl fmt::Display for ObjectUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// Reads the object's entries, as a list file is read; the message of an
/// error says what to check.
pub async fn read_list(
    s3: &aws_sdk_s3::Client,
    uri: &ObjectUri,
    deadline: Option<Instant>,
) -> Result<Vec<ListEntry>, String> {
    let read = async {
        let output = s3
            .get_object()
            .bucket(&uri.bucket)
            .key(&uri.key)
            .send()
            .await
            .map_err(|error| crate::aws::describe_error(&error))?;
        let body = output
            .body
            .collect()
            .await
            .map_err(|error| format!("the download broke off: {error}"))?;
        Ok::<_, String>(body.into_bytes())
    };
    let bytes = match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline.into(), read)
            .await
            .map_err(|_| "the deadline came before the object was read".to_string())?,
        None => read.await,
    }
    .map_err(|reason| {
        format!(
            "cannot read the list {uri}: {reason}. Check that the object exists and that the \
             function's role may s3:GetObject it (and kms:Decrypt with a customer managed key)"
        )
    })?;
    Ok(list::read_list_bytes(&bytes))
}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::operation::get_object::{GetObjectError, GetObjectOutput};
    use aws_sdk_s3::primitives::ByteStream;
    use aws_sdk_s3::types::error::NoSuchKey;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    use super::*;

    #[test]
    fn uris_name_a_bucket_and_a_key() {
        let uri: ObjectUri = "s3://platform-config/warm/images.txt".parse().unwrap();
        assert_eq!(
            (uri.bucket.as_str(), uri.key.as_str()),
            ("platform-config", "warm/images.txt")
        );
        assert_eq!(uri.to_string(), "s3://platform-config/warm/images.txt");
        for bad in [
            "platform-config/images.txt",
            "s3://bucket",
            "s3://bucket/",
            "s3://Bucket/x",
            "s3://b/x",
            "https://b.s3.amazonaws.com/x",
        ] {
            let error = bad.parse::<ObjectUri>().unwrap_err().to_string();
            assert!(error.contains("s3://BUCKET/KEY"), "{bad}: {error}");
        }
    }

    #[tokio::test]
    async fn an_object_is_read_like_a_list_file() {
        let rule = mock!(aws_sdk_s3::Client::get_object).then_output(|| {
            GetObjectOutput::builder()
                .body(ByteStream::from_static(
                    b"# team list\nnginx:1.27\nredis:\xff7, alpine\n",
                ))
                .build()
        });
        let s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&rule]);
        let uri: ObjectUri = "s3://config-bucket/images.txt".parse().unwrap();
        let entries = read_list(&s3, &uri, None).await.unwrap();
        // The unreadable line is one entry, its error; the other lines are read.
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0], ListEntry::Text("nginx:1.27".into()));
        assert!(
            matches!(&entries[1], ListEntry::Unreadable { error, .. } if error.starts_with("line 3 is not valid UTF-8"))
        );
    }

    #[tokio::test]
    async fn a_missing_object_says_what_to_check() {
        let rule = mock!(aws_sdk_s3::Client::get_object).then_error(|| {
            GetObjectError::NoSuchKey(
                NoSuchKey::builder()
                    .message("The specified key does not exist.")
                    .build(),
            )
        });
        let s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&rule]);
        let uri: ObjectUri = "s3://config-bucket/images.txt".parse().unwrap();
        let error = read_list(&s3, &uri, None).await.unwrap_err();
        assert!(
            error.starts_with("cannot read the list s3://config-bucket/images.txt:")
                && error.contains("s3:GetObject"),
            "{error}"
        );
    }
}
