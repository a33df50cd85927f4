//! A client for the Confluent Schema Registry REST API (and compatible servers).
//!
//! Covered: schema by id, a subject's versions and a version (or `latest`), register, the
//! registry's own compatibility check, subject and global compatibility config. Every request has
//! a timeout; connection errors, timeouts, `429` and `5xx` answers are retried with exponential
//! backoff; other `4xx` answers are final and reported with the registry's `error_code` and
//! message. Basic auth comes from [`RegistryOptions`] or the URL's user info (never logged: the
//! URL in errors has its credentials removed). TLS uses the platform's roots plus an optional CA
//! bundle. Schemas by id and by (subject, version) never change, so they are cached for the
//! client's lifetime; version lists and configs are always asked for.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{debug, warn};

use crate::compat::Level;
use crate::error::SchemaError;
use crate::registry::{RegisteredSchema, SchemaRegistry};

/// Media type of the registry API.
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// How to reach a registry.
#[derive(Clone)]
pub struct RegistryOptions {
    /// Base URL, e.g. `https://registry.example:8081` (user info in it is used for basic auth).
    pub url: String,
    /// Basic-auth user (overrides the URL's).
    pub username: Option<String>,
    /// Basic-auth password (overrides the URL's).
    pub password: Option<String>,
    /// PEM file of extra CA certificates to trust.
    pub ca_file: Option<PathBuf>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Attempts per request (retries = attempts − 1).
    pub max_attempts: u32,
    /// First backoff; doubles per retry, capped at 5 s.
    pub backoff: Duration,
    /// Largest answer read, in bytes: a longer one is an error, not an allocation.
    pub max_response_bytes: u64,
}

impl std::fmt::Debug for RegistryOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryOptions")
            .field("url", &redact(&self.url))
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish()
    }
}

impl RegistryOptions {
    /// Defaults for `url`: 10 s timeout, 5 attempts, 200 ms first backoff, 8 MiB answers.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            username: None,
            password: None,
            ca_file: None,
            timeout: Duration::from_secs(10),
            max_attempts: 5,
            backoff: Duration::from_millis(200),
            max_response_bytes: 8 << 20,
        }
    }
}

/// The URL without user info, for messages.
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string().trim_end_matches('/').to_string()
        }
        Err(_) => "<invalid url>".into(),
    }
}

/// A subject's version as the registry returns it.
#[derive(Debug, Deserialize)]
struct VersionBody {
    subject: String,
    id: u32,
    version: u32,
    schema: String,
    #[serde(rename = "schemaType", default)]
    schema_type: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error_code: Option<i64>,
    message: Option<String>,
}

/// The registry's own verdict (`POST /compatibility/...?verbose=true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryVerdict {
    /// Whether the registry accepts the schema.
    pub is_compatible: bool,
    /// The registry's reasons (verbose mode).
    pub messages: Vec<String>,
}

/// A Confluent Schema Registry client with caching.
pub struct ConfluentRegistry {
    http: reqwest::Client,
    base: reqwest::Url,
    shown: String,
    auth: Option<(String, Option<String>)>,
    options: RegistryOptions,
    by_id: Mutex<HashMap<u32, Arc<RegisteredSchema>>>,
    by_version: Mutex<HashMap<(String, u32), Arc<RegisteredSchema>>>,
}

impl std::fmt::Debug for ConfluentRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfluentRegistry")
            .field("url", &self.shown)
            .field("user", &self.auth.as_ref().map(|(user, _)| user))
            .field("options", &self.options)
            .finish()
    }
}

impl ConfluentRegistry {
    /// A client for `options.url` (nothing is fetched yet).
    pub fn new(options: RegistryOptions) -> Result<Self, SchemaError> {
        let shown = redact(&options.url);
        let invalid = |message: String| SchemaError::Registry {
            url: shown.clone(),
            status: None,
            error_code: None,
            message,
        };
        let mut base = reqwest::Url::parse(&options.url)
            .map_err(|e| invalid(format!("not a valid URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "unsupported scheme {:?}; expected http or https",
                base.scheme()
            )));
        }
        let url_user = (!base.username().is_empty()).then(|| {
            (
                percent_decode(base.username()),
                base.password().map(percent_decode),
            )
        });
        let _ = base.set_username("");
        let _ = base.set_password(None);
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let auth = match (&options.username, url_user) {
            (Some(user), _) => Some((user.clone(), options.password.clone())),
            (None, Some((user, password))) => Some((user, options.password.clone().or(password))),
            (None, None) => None,
        };
        let mut builder = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .user_agent(concat!("kappa/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &options.ca_file {
            let pem = std::fs::read(path).map_err(|source| SchemaError::Read {
                path: path.clone(),
                source,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                invalid(format!(
                    "CA file {}: no PEM certificates: {e}",
                    path.display()
                ))
            })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| invalid(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            base,
            shown,
            auth,
            options,
            by_id: Mutex::default(),
            by_version: Mutex::default(),
        })
    }

    /// The registry URL without credentials.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// Sends a request, retrying what may succeed later; returns the status and the JSON body of
    /// a 2xx answer, `Ok(None)` for a 404 when `not_found_ok`, an error otherwise.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        not_found_ok: bool,
    ) -> Result<Option<Value>, SchemaError> {
        let url = self.base.join(path).map_err(|e| SchemaError::Registry {
            url: self.shown.clone(),
            status: None,
            error_code: None,
            message: format!("bad request path {path:?}: {e}"),
        })?;
        let attempts = self.options.max_attempts.max(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .header(reqwest::header::ACCEPT, CONTENT_TYPE);
            if let Some((user, password)) = &self.auth {
                request = request.basic_auth(user, password.as_ref());
            }
            if let Some(body) = body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
                    .body(body.to_string());
            }
            match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let text = self.read_body(path, status, response).await?;
                    if status.is_success() {
                        let value = serde_json::from_str(&text).map_err(|e| {
                            self.error(path, Some(status), None, format!("answer is not JSON: {e}"))
                        })?;
                        return Ok(Some(value));
                    }
                    let parsed: Option<ErrorBody> = serde_json::from_str(&text).ok();
                    let code = parsed.as_ref().and_then(|b| b.error_code);
                    let message = parsed
                        .and_then(|b| b.message)
                        .unwrap_or_else(|| text.chars().take(200).collect());
                    if status == StatusCode::NOT_FOUND && not_found_ok {
                        return Ok(None);
                    }
                    if !(status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS) {
                        return Err(self.error(path, Some(status), code, message));
                    }
                    last = format!("HTTP {status}: {message}");
                }
                Err(e) => {
                    last = if e.is_timeout() {
                        format!("timed out after {:?}", self.options.timeout)
                    } else if e.is_connect() {
                        format!("cannot connect: {}", root_cause(&e))
                    } else {
                        root_cause(&e)
                    };
                }
            }
            if attempt < attempts {
                let wait = self
                    .options
                    .backoff
                    .saturating_mul(1 << (attempt - 1).min(5))
                    .min(Duration::from_secs(5));
                warn!(registry = %self.shown, path, attempt, error = %last, ?wait, "schema registry request failed; retrying");
                tokio::time::sleep(wait).await;
            }
        }
        Err(SchemaError::RegistryUnreachable {
            url: self.shown.clone(),
            path: path.to_string(),
            attempts,
            message: last,
        })
    }

    /// The answer's body as text, read chunk by chunk and refused past `max_response_bytes`
    /// (announced or read), so a hostile or broken registry cannot make Kappa allocate without
    /// bound. A body cut off mid-answer reads as what arrived, as before (then not JSON).
    async fn read_body(
        &self,
        path: &str,
        status: StatusCode,
        mut response: reqwest::Response,
    ) -> Result<String, SchemaError> {
        let limit = self.options.max_response_bytes;
        let too_big = |size: String| {
            self.error(
                path,
                Some(status),
                None,
                format!(
                    "the answer is {size} bytes, more than the limit of {limit} ([schema] max_response_bytes)"
                ),
            )
        };
        if let Some(announced) = response.content_length()
            && announced > limit
        {
            return Err(too_big(announced.to_string()));
        }
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(too_big(format!("more than {limit}")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    fn error(
        &self,
        path: &str,
        status: Option<StatusCode>,
        error_code: Option<i64>,
        message: String,
    ) -> SchemaError {
        SchemaError::Registry {
            url: format!("{}/{path}", self.shown),
            status: status.map(|s| s.as_u16()),
            error_code,
            message,
        }
    }

    fn parse_schema(
        &self,
        path: &str,
        subject: &str,
        version: u32,
        id: u32,
        text: String,
        schema_type: Option<&str>,
    ) -> Result<Arc<RegisteredSchema>, SchemaError> {
        if let Some(kind) = schema_type
            && kind != "AVRO"
        {
            return Err(self.error(
                path,
                None,
                None,
                format!("schema id {id} is a {kind} schema; Kappa reads Avro only"),
            ));
        }
        let schema = crate::names::parse_schema(&text).map_err(|e| {
            self.error(
                path,
                None,
                None,
                format!("schema id {id} is not a valid Avro schema: {e}"),
            )
        })?;
        Ok(Arc::new(RegisteredSchema {
            subject: subject.to_string(),
            version,
            id,
            json: text,
            schema,
        }))
    }

    /// A version of `subject` (`None`: the latest).
    pub async fn version(
        &self,
        subject: &str,
        version: Option<u32>,
    ) -> Result<Arc<RegisteredSchema>, SchemaError> {
        if let Some(v) = version
            && let Some(hit) = self.cached_version(subject, v)
        {
            return Ok(hit);
        }
        let which = version.map_or("latest".to_string(), |v| v.to_string());
        let path = format!("subjects/{}/versions/{which}", encode(subject));
        let body = self
            .call(Method::GET, &path, None, false)
            .await?
            .unwrap_or_default();
        let body: VersionBody = serde_json::from_value(body)
            .map_err(|e| self.error(&path, None, None, format!("unexpected answer: {e}")))?;
        let registered = self.parse_schema(
            &path,
            &body.subject,
            body.version,
            body.id,
            body.schema,
            body.schema_type.as_deref(),
        )?;
        if let Ok(mut cache) = self.by_version.lock() {
            cache.insert((subject.to_string(), body.version), registered.clone());
        }
        Ok(registered)
    }

    fn cached_version(&self, subject: &str, version: u32) -> Option<Arc<RegisteredSchema>> {
        self.by_version
            .lock()
            .ok()?
            .get(&(subject.to_string(), version))
            .cloned()
    }

    /// Registers `schema` under `subject`; returns its id (the existing id if already there).
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, SchemaError> {
        let path = format!("subjects/{}/versions", encode(subject));
        let body = json!({ "schema": schema, "schemaType": "AVRO" });
        let answer = self
            .call(Method::POST, &path, Some(&body), false)
            .await?
            .unwrap_or_default();
        answer
            .get("id")
            .and_then(Value::as_u64)
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| self.error(&path, None, None, format!("answer has no id: {answer}")))
    }

    /// The registry's own compatibility verdict for `schema` against `subject`'s latest version.
    pub async fn check_compatibility(
        &self,
        subject: &str,
        schema: &str,
    ) -> Result<RegistryVerdict, SchemaError> {
        let path = format!(
            "compatibility/subjects/{}/versions/latest?verbose=true",
            encode(subject)
        );
        let body = json!({ "schema": schema, "schemaType": "AVRO" });
        let answer = self
            .call(Method::POST, &path, Some(&body), false)
            .await?
            .unwrap_or_default();
        let is_compatible = answer
            .get("is_compatible")
            .and_then(Value::as_bool)
            .ok_or_else(|| {
                self.error(
                    &path,
                    None,
                    None,
                    format!("answer has no is_compatible: {answer}"),
                )
            })?;
        let messages = answer
            .get("messages")
            .and_then(Value::as_array)
            .map(|m| {
                m.iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        Ok(RegistryVerdict {
            is_compatible,
            messages,
        })
    }

    /// The global compatibility level.
    pub async fn global_level(&self) -> Result<Level, SchemaError> {
        let answer = self
            .call(Method::GET, "config", None, false)
            .await?
            .unwrap_or_default();
        self.level_of("config", &answer)
    }

    /// The level set for `subject` itself (`None` when the subject has no own level).
    pub async fn subject_level(&self, subject: &str) -> Result<Option<Level>, SchemaError> {
        let path = format!("config/{}", encode(subject));
        match self.call(Method::GET, &path, None, true).await? {
            Some(answer) => self.level_of(&path, &answer).map(Some),
            None => Ok(None),
        }
    }

    /// Sets `subject`'s level.
    pub async fn set_subject_level(&self, subject: &str, level: Level) -> Result<(), SchemaError> {
        let path = format!("config/{}", encode(subject));
        let body = json!({ "compatibility": level.as_str() });
        self.call(Method::PUT, &path, Some(&body), false).await?;
        Ok(())
    }

    fn level_of(&self, path: &str, answer: &Value) -> Result<Level, SchemaError> {
        let text = answer
            .get("compatibilityLevel")
            .or_else(|| answer.get("compatibility"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                self.error(
                    path,
                    None,
                    None,
                    format!("answer has no compatibility level: {answer}"),
                )
            })?;
        text.parse::<Level>()
            .map_err(|message| self.error(path, None, None, message))
    }
}

#[async_trait]
impl SchemaRegistry for ConfluentRegistry {
    async fn by_id(&self, id: u32) -> Result<Option<Arc<RegisteredSchema>>, SchemaError> {
        if let Some(hit) = self.by_id.lock().ok().and_then(|c| c.get(&id).cloned()) {
            return Ok(Some(hit));
        }
        let path = format!("schemas/ids/{id}");
        let Some(answer) = self.call(Method::GET, &path, None, true).await? else {
            debug!(id, "schema id not in the registry");
            return Ok(None);
        };
        let text = answer
            .get("schema")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                self.error(&path, None, None, format!("answer has no schema: {answer}"))
            })?
            .to_string();
        let kind = answer.get("schemaType").and_then(Value::as_str);
        // An id is not tied to one subject; the version is unknown (0) for id lookups.
        let registered = self.parse_schema(&path, "", 0, id, text, kind)?;
        if let Ok(mut cache) = self.by_id.lock() {
            cache.insert(id, registered.clone());
        }
        Ok(Some(registered))
    }

    async fn versions(&self, subject: &str) -> Result<Vec<Arc<RegisteredSchema>>, SchemaError> {
        let path = format!("subjects/{}/versions", encode(subject));
        let list = match self.call(Method::GET, &path, None, true).await? {
            Some(list) => list,
            None => {
                return Err(SchemaError::UnknownSubject {
                    subject: subject.to_string(),
                    known: format!("see {}/subjects", self.shown),
                });
            }
        };
        let numbers: Vec<u32> = serde_json::from_value(list)
            .map_err(|e| self.error(&path, None, None, format!("unexpected answer: {e}")))?;
        let mut out = Vec::with_capacity(numbers.len());
        for number in numbers {
            out.push(self.version(subject, Some(number)).await?);
        }
        out.sort_by_key(|v| v.version);
        Ok(out)
    }

    async fn compatibility(&self, subject: &str) -> Result<Option<Level>, SchemaError> {
        match self.subject_level(subject).await? {
            Some(level) => Ok(Some(level)),
            None => self.global_level().await.map(Some),
        }
    }
}

/// Characters kept as they are in a path segment (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a subject for a path segment.
fn encode(subject: &str) -> String {
    utf8_percent_encode(subject, SEGMENT).to_string()
}

fn percent_decode(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// The innermost cause of an HTTP error (reqwest's own message is often only "error sending
/// request").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
