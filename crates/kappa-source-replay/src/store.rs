//! Opening the archive's object store from its URL.

use std::io::Read;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    Attributes, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

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
            Ok((Arc::new(LocalArchive(store)), Path::default()))
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

/// The most bytes a whole-object read may return, passed in [`GetOptions::extensions`]: a
/// [`LocalArchive`] reads an object no larger in one blocking call; the object store answers a
/// larger one without reading its body, and the caller refuses it by its size.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadLimit(pub u64);

/// An archive on local disk: [`LocalFileSystem`], except that a whole-object read with a
/// [`ReadLimit`] opens, sizes and reads the file in one call on a blocking thread.
/// `LocalFileSystem` hands a read to a blocking thread twice (to open the file, then to read it),
/// and a replay reads about a thousand objects a second per core.
#[derive(Debug)]
struct LocalArchive(LocalFileSystem);

impl std::fmt::Display for LocalArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl LocalArchive {
    /// The whole file at `path`, or the open file unread when it is larger than `limit` (its
    /// size in the metadata says so). A file that grew past `limit` since it was sized gives
    /// `limit + 1` bytes and that size, so that it is refused as well.
    fn read_whole(
        path: std::path::PathBuf,
        location: Path,
        limit: u64,
    ) -> object_store::Result<GetResult> {
        let io_error = |source: std::io::Error, path: &std::path::Path| match source.kind() {
            std::io::ErrorKind::NotFound => object_store::Error::NotFound {
                path: path.display().to_string(),
                source: Box::new(source),
            },
            _ => object_store::Error::Generic {
                store: "LocalFileSystem",
                source: format!("reading {}: {source}", path.display()).into(),
            },
        };
        let file = std::fs::File::open(&path).map_err(|e| io_error(e, &path))?;
        let metadata = file.metadata().map_err(|e| io_error(e, &path))?;
        if metadata.is_dir() {
            let source = std::io::Error::new(std::io::ErrorKind::NotFound, "is a directory");
            return Err(io_error(source, &path));
        }
        let mut meta = ObjectMeta {
            location,
            last_modified: metadata.modified().map(Into::into).unwrap_or_default(),
            size: metadata.len(),
            e_tag: None,
            version: None,
        };
        if meta.size > limit {
            return Ok(GetResult {
                range: 0..meta.size,
                meta,
                payload: GetResultPayload::File(file, path),
                attributes: Attributes::default(),
            });
        }
        let mut bytes = Vec::with_capacity(meta.size as usize);
        (&file)
            .take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| io_error(e, &path))?;
        meta.size = bytes.len() as u64;
        let bytes = Bytes::from(bytes);
        Ok(GetResult {
            range: 0..meta.size,
            meta,
            payload: GetResultPayload::Stream(futures::stream::once(async { Ok(bytes) }).boxed()),
            attributes: Attributes::default(),
        })
    }
}

#[async_trait]
impl ObjectStore for LocalArchive {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.0.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.0.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        // A plain whole-object read; anything else (ranges, conditions, versions) is
        // `LocalFileSystem`'s.
        let plain = options.range.is_none()
            && !options.head
            && options.version.is_none()
            && options.if_match.is_none()
            && options.if_none_match.is_none()
            && options.if_modified_since.is_none()
            && options.if_unmodified_since.is_none();
        let Some(&ReadLimit(limit)) = options.extensions.get::<ReadLimit>().filter(|_| plain)
        else {
            return self.0.get_opts(location, options).await;
        };
        let path = self.0.path_to_filesystem(location)?;
        let location = location.clone();
        tokio::task::spawn_blocking(move || Self::read_whole(path, location, limit))
            .await
            .map_err(|source| object_store::Error::JoinError { source })?
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.0.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.0.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.0.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.0.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.0.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.0.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: u64 = 1000;

    async fn get(
        store: &dyn ObjectStore,
        key: &str,
        limit: Option<u64>,
    ) -> object_store::Result<GetResult> {
        let mut options = GetOptions::default();
        if let Some(limit) = limit {
            options.extensions.insert(ReadLimit(limit));
        }
        store.get_opts(&Path::from(key), options).await
    }

    #[tokio::test]
    async fn a_local_object_within_the_limit_is_read_whole_and_a_larger_one_is_left_unread() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let (store, _) = open_store(&url, &S3Options::default()).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        for size in [0, 1, 999, LIMIT, LIMIT + 1, 70_000] {
            let key = format!("sub/object-{size}.avro");
            let body: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            std::fs::write(dir.path().join(&key), &body).unwrap();
            let read = get(store.as_ref(), &key, Some(LIMIT)).await.unwrap();
            assert_eq!(read.meta.size, size, "{key}");
            assert_eq!(read.range, 0..size, "{key}");
            assert_eq!(read.meta.location.as_ref(), key);
            // Within the limit the bytes come read; above it the file is handed back unread,
            // for the caller to refuse by its size.
            let unread = matches!(read.payload, GetResultPayload::File(..));
            assert_eq!(unread, size > LIMIT, "{key}");
            assert_eq!(
                read.bytes().await.unwrap().as_ref(),
                body.as_slice(),
                "{key}"
            );
            // Without a limit it is LocalFileSystem's read, with the same bytes.
            let plain = get(store.as_ref(), &key, None).await.unwrap();
            assert!(matches!(plain.payload, GetResultPayload::File(..)), "{key}");
            assert_eq!(
                plain.bytes().await.unwrap().as_ref(),
                body.as_slice(),
                "{key}"
            );
        }
        let missing = get(store.as_ref(), "sub/missing.avro", Some(LIMIT)).await;
        assert!(
            matches!(missing, Err(object_store::Error::NotFound { .. })),
            "{missing:?}"
        );
        let directory = get(store.as_ref(), "sub", Some(LIMIT)).await;
        assert!(
            matches!(directory, Err(object_store::Error::NotFound { .. })),
            "{directory:?}"
        );
        // A ranged read is LocalFileSystem's, limit or not.
        let mut options = GetOptions::default();
        options.extensions.insert(ReadLimit(LIMIT));
        options.range = Some((10..20).into());
        let ranged = store
            .get_opts(&Path::from("sub/object-999.avro"), options)
            .await
            .unwrap();
        assert_eq!(ranged.range, 10..20);
        assert_eq!(ranged.bytes().await.unwrap().len(), 10);
    }
}
