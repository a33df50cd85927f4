//! The REST catalog's atomic primitive: `POST /v1/{prefix}/namespaces/{ns}/tables/{table}` with
//! requirements (`assert-table-uuid`, `assert-ref-snapshot-id` on every branch the commit moves)
//! and updates (`add-snapshot`, `set-snapshot-ref`, `set-properties`), as the Iceberg REST spec
//! defines a table commit.
//!
//! iceberg-catalog-rest sends exactly this request from its `update_table`, but only for the
//! `TableCommit`s iceberg-rust's own `Transaction` builds (`TableCommit`'s builder is
//! crate-private). So this module speaks the same protocol for the snapshots Kappa's producer
//! makes, with the catalog client's own settings: the `/v1/config` defaults and overrides
//! (`prefix`, `uri`), OAuth2 client credentials or a bearer token, `header.*` properties. The
//! request body is iceberg-catalog-rest's `CommitTableRequest`.
//!
//! Outcomes: 200 committed; 409 (`CommitFailedException`) a conflict, nothing changed; 401 once
//! with client credentials: a new token, and the request again; any other 4xx a refusal,
//! nothing changed; a 5xx, a timeout or a broken connection an unknown outcome (the caller
//! reloads the table and looks for the snapshot).

use std::collections::HashMap;

use iceberg::TableIdent;
use iceberg_catalog_rest::CommitTableRequest;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::{Staged, Swap};
use crate::catalog::{CatalogConfig, redact_uri};
use crate::error::IcebergError;

/// How the client authenticates.
enum Auth {
    /// No `Authorization` header.
    Anonymous,
    /// A bearer token given as it is.
    Token(String),
    /// OAuth2 client credentials exchanged for a token (cached, renewed on a 401).
    Credentials {
        endpoint: String,
        form: Vec<(String, String)>,
        token: tokio::sync::Mutex<Option<String>>,
    },
}

/// Commits staged snapshots to an Iceberg REST catalog.
pub(crate) struct RestCommitter {
    client: reqwest::Client,
    /// `{uri}/v1[/{prefix}]`.
    base: String,
    headers: HeaderMap,
    auth: Auth,
    /// For errors (credentials removed).
    uri: String,
}

#[derive(serde::Deserialize)]
struct ConfigResponse {
    #[serde(default)]
    defaults: HashMap<String, String>,
    #[serde(default)]
    overrides: HashMap<String, String>,
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: String,
}

impl RestCommitter {
    /// Reads the catalog's `/v1/config` (with the configured warehouse) and merges it as
    /// iceberg-catalog-rest does: its defaults, then the configured properties, then its
    /// overrides.
    pub(crate) async fn connect(config: &CatalogConfig) -> Result<Self, IcebergError> {
        let uri = redact_uri(&config.uri);
        let failed = |operation: &str, message: String| IcebergError::Catalog {
            uri: uri.clone(),
            operation: operation.to_string(),
            source: Box::new(iceberg::Error::new(
                iceberg::ErrorKind::Unexpected,
                kappa_core::redact::redact(&message),
            )),
        };
        let client = crate::catalog::rest_http_client()
            .map_err(|e| failed("building its HTTP client", e.to_string()))?;
        let root = config.uri.trim_end_matches('/').to_string();
        let props = &config.properties;
        let auth = auth(&root, props);
        let mut committer = RestCommitter {
            client,
            base: format!("{root}/v1"),
            headers: headers(props).map_err(|e| failed("reading its header.* properties", e))?,
            auth,
            uri: uri.clone(),
        };
        let mut request = committer
            .client
            .get(format!("{root}/v1/config"))
            .headers(committer.headers.clone());
        if !config.warehouse.is_empty() {
            request = request.query(&[("warehouse", config.warehouse.as_str())]);
        }
        let response = committer
            .send(request)
            .await
            .map_err(|e| failed("reading its /v1/config", e))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(failed(
                "reading its /v1/config",
                format!("HTTP {status}: {}", excerpt(&body)),
            ));
        }
        let server: ConfigResponse = response
            .json()
            .await
            .map_err(|e| failed("reading its /v1/config", e.to_string()))?;
        // Only the catalog's override moves the endpoint, as in iceberg-catalog-rest.
        let root = server
            .overrides
            .get("uri")
            .map(|u| u.trim_end_matches('/').to_string())
            .unwrap_or(root);
        let mut merged = server.defaults;
        merged.extend(props.clone());
        merged.extend(server.overrides);
        committer.base = match merged.get("prefix").map(|p| p.trim_matches('/')) {
            Some(prefix) if !prefix.is_empty() => format!("{root}/v1/{prefix}"),
            _ => format!("{root}/v1"),
        };
        committer.headers =
            headers(&merged).map_err(|e| failed("reading its header.* properties", e))?;
        Ok(committer)
    }

    /// Commits `staged` (its requirements guard the base it was staged on).
    pub(crate) async fn swap(&self, ident: &TableIdent, staged: &Staged) -> Swap {
        let url = format!(
            "{}/namespaces/{}/tables/{}",
            self.base,
            ident.namespace().to_url_string(),
            ident.name()
        );
        let body = CommitTableRequest {
            identifier: Some(ident.clone()),
            requirements: staged.requirements.clone(),
            updates: staged.updates.clone(),
        };
        let request = self
            .client
            .post(url)
            .headers(self.headers.clone())
            .json(&body);
        let response = match self.send(request).await {
            Ok(response) => response,
            Err(reason) => return Swap::Unknown(reason),
        };
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        match status {
            StatusCode::OK => Swap::Committed,
            StatusCode::CONFLICT => Swap::Conflict,
            s if s.is_server_error() => Swap::Unknown(format!("HTTP {s}: {}", excerpt(&text))),
            s => Swap::Refused(format!(
                "the catalog {} refused the commit: HTTP {s}: {}",
                self.uri,
                excerpt(&text)
            )),
        }
    }

    /// Sends `request` with the `Authorization` header; with client credentials, a 401 gets a
    /// new token and the request once more (a 401 was not applied). `Err`: no answer (the
    /// outcome of a commit is unknown).
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, String> {
        let retry = request.try_clone();
        let response = self.authorized(request, false).await?;
        if response.status() == StatusCode::UNAUTHORIZED
            && let (Auth::Credentials { .. }, Some(retry)) = (&self.auth, retry)
        {
            return self.authorized(retry, true).await;
        }
        Ok(response)
    }

    async fn authorized(
        &self,
        request: reqwest::RequestBuilder,
        renew: bool,
    ) -> Result<reqwest::Response, String> {
        let request = match &self.auth {
            Auth::Anonymous => request,
            Auth::Token(token) => request.bearer_auth(token),
            Auth::Credentials {
                endpoint,
                form,
                token,
            } => {
                let mut cached = token.lock().await;
                if renew || cached.is_none() {
                    *cached = Some(self.exchange(endpoint, form).await?);
                }
                request.bearer_auth(cached.as_deref().unwrap_or_default())
            }
        };
        request
            .send()
            .await
            .map_err(|e| kappa_core::redact::redact(&e.to_string()))
    }

    /// The OAuth2 client-credentials exchange.
    async fn exchange(&self, endpoint: &str, form: &[(String, String)]) -> Result<String, String> {
        let response = self
            .client
            .post(endpoint)
            .form(form)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "requesting a token: {}",
                    kappa_core::redact::redact(&e.to_string())
                )
            })?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(format!(
                "requesting a token from {}: HTTP {status}: {}",
                redact_uri(endpoint),
                excerpt(&body)
            ));
        }
        let token: TokenResponse = response
            .json()
            .await
            .map_err(|e| format!("reading the token response: {e}"))?;
        Ok(token.access_token)
    }
}

/// How `props` say to authenticate: `token` wins over `credential`, as in iceberg-catalog-rest.
fn auth(root: &str, props: &HashMap<String, String>) -> Auth {
    if let Some(token) = props.get("token") {
        return Auth::Token(token.clone());
    }
    let Some(credential) = props.get("credential") else {
        return Auth::Anonymous;
    };
    let mut form = vec![("grant_type".to_string(), "client_credentials".to_string())];
    match credential.split_once(':') {
        Some((id, secret)) => {
            form.push(("client_id".into(), id.into()));
            form.push(("client_secret".into(), secret.into()));
        }
        None => form.push(("client_secret".into(), credential.clone())),
    }
    form.push((
        "scope".into(),
        props
            .get("scope")
            .cloned()
            .unwrap_or_else(|| "catalog".into()),
    ));
    for optional in ["audience", "resource"] {
        if let Some(value) = props.get(optional) {
            form.push((optional.into(), value.clone()));
        }
    }
    Auth::Credentials {
        endpoint: props
            .get("oauth2-server-uri")
            .cloned()
            .unwrap_or_else(|| format!("{root}/v1/oauth/tokens")),
        form,
        token: tokio::sync::Mutex::new(None),
    }
}

/// The headers every request carries: JSON, the client's name and the `header.*` properties.
fn headers(props: &HashMap<String, String>) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    headers.insert(
        reqwest::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        reqwest::header::USER_AGENT,
        HeaderValue::from_static(concat!("kappa/", env!("CARGO_PKG_VERSION"))),
    );
    for (key, value) in props {
        let Some(name) = key.strip_prefix("header.") else {
            continue;
        };
        let name = HeaderName::try_from(name).map_err(|_| format!("{key}: not a header name"))?;
        let value =
            HeaderValue::from_str(value).map_err(|_| format!("{key}: not a header value"))?;
        headers.insert(name, value);
    }
    Ok(headers)
}

/// The start of a response body, for an error message (redacted).
fn excerpt(body: &str) -> String {
    let mut text: String = body.chars().take(500).collect();
    if text.len() < body.len() {
        text.push('…');
    }
    kappa_core::redact::redact(&text)
}

impl std::fmt::Debug for RestCommitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestCommitter")
            .field("uri", &self.uri)
            .field("base", &redact_uri(&self.base))
            .finish_non_exhaustive()
    }
}
