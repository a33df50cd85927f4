//! Opening the archive's object store from its URL.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;

use crate::error::ReplayError;

/// S3 settings; unset fields fall back to the standard `AWS_*` environment variables.
#[derive(Clone, Default)]
pub struct S3Options {
    /// Endpoint URL (SeaweedFS, MinIO, ...); virtual-hosted style is turned off when set.
    pub endpoint: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Allow plain HTTP endpoints.
    pub allow_http: bool,
    /// Path-style requests (`host/bucket/key`) or virtual-hosted ones (`bucket.host/key`);
    /// `None`: path style (object_store's default, and what an `endpoint` such as MinIO or
    /// SeaweedFS needs).
    pub path_style: Option<bool>,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .field("allow_http", &self.allow_http)
            .field("path_style", &self.path_style)
            .finish()
    }
}

/// The store and the prefix inside it for `file:///dir` or `s3://bucket/prefix`.
pub fn open_store(url: &str, s3: &S3Options) -> Result<(Arc<dyn ObjectStore>, Path), ReplayError> {
    let bad = |message: String| ReplayError::Url {
        url: url.to_string(),
        message,
    };
    let parsed = url::Url::parse(url).map_err(|e| bad(format!("not a URL: {e}")))?;
    match parsed.scheme() {
        "file" => {
            let dir = parsed
                .to_file_path()
                .map_err(|()| bad("expected file:///absolute/path".into()))?;
            if !dir.is_dir() {
                return Err(bad(format!("directory {} does not exist", dir.display())));
            }
            let store = LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| bad(format!("cannot open {}: {e}", dir.display())))?;
            Ok((Arc::new(store), Path::default()))
        }
        "s3" | "s3a" => {
            let bucket = parsed
                .host_str()
                .ok_or_else(|| bad("expected s3://bucket/prefix".into()))?;
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(endpoint) = &s3.endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            if s3.endpoint.is_some() || s3.path_style.is_some() {
                builder = builder.with_virtual_hosted_style_request(!s3.path_style.unwrap_or(true));
            }
            if let Some(region) = &s3.region {
                builder = builder.with_region(region);
            }
            if let Some(key) = &s3.access_key_id {
                builder = builder.with_access_key_id(key);
            }
            if let Some(secret) = &s3.secret_access_key {
                builder = builder.with_secret_access_key(secret);
            }
            if s3.allow_http
                || s3
                    .endpoint
                    .as_deref()
                    .is_some_and(|e| e.starts_with("http://"))
            {
                builder = builder.with_allow_http(true);
            }
            let store = builder.build().map_err(|e| bad(e.to_string()))?;
            let prefix = Path::from(parsed.path().trim_matches('/'));
            Ok((Arc::new(store), prefix))
        }
        other => Err(bad(format!(
            "unsupported scheme {other:?}; expected file:// or s3://"
        ))),
    }
}
