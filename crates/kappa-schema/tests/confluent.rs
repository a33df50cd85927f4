//! The Confluent Schema Registry client against an HTTP server that answers as the registry's
//! REST API documents (status codes, `application/vnd.schemaregistry.v1+json`, error bodies
//! `{"error_code":40401,"message":...}`): lookups, registration, config, retries, auth, timeouts,
//! and the wire decoder resolving writer schemas through it.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kappa_schema::compat::Level;
use kappa_schema::{
    ConfluentRegistry, RegistryOptions, SchemaError, SchemaRegistry, TableMapping, WireDecoder,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const V1: &str = include_str!("../../../contracts/orders-value/1.avsc");
const V2: &str = include_str!("../../../contracts/orders-value/2.avsc");

/// The registry's state and scripted misbehaviour.
#[derive(Default)]
struct Registry {
    /// subject -> [(id, schema)] in version order.
    subjects: BTreeMap<String, Vec<(u32, String)>>,
    /// id -> schema.
    ids: BTreeMap<u32, String>,
    global_level: String,
    subject_levels: BTreeMap<String, String>,
    /// Basic auth the server requires (`Authorization` header value).
    auth: Option<String>,
}

#[derive(Clone)]
struct Stub {
    state: Arc<Mutex<Registry>>,
    /// Answer this many requests with a 500 first.
    fail_next: Arc<AtomicUsize>,
    /// Requests seen ("METHOD path").
    log: Arc<Mutex<Vec<String>>>,
    url: String,
}

impl Stub {
    async fn start() -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stub = Stub {
            state: Arc::new(Mutex::new(Registry {
                global_level: "BACKWARD".into(),
                ..Registry::default()
            })),
            fail_next: Arc::default(),
            log: Arc::default(),
            url,
        };
        let server = stub.clone();
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                let server = server.clone();
                tokio::spawn(async move { server.serve(socket).await });
            }
        });
        stub
    }

    fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn register(&self, subject: &str, schema: &str) -> u32 {
        let mut state = self.state.lock().unwrap();
        let id = state
            .ids
            .iter()
            .find(|(_, s)| s.as_str() == schema)
            .map(|(id, _)| *id)
            .unwrap_or(state.ids.len() as u32 + 1);
        state.ids.insert(id, schema.to_string());
        let versions = state.subjects.entry(subject.to_string()).or_default();
        if !versions.iter().any(|(i, _)| *i == id) {
            versions.push((id, schema.to_string()));
        }
        id
    }

    async fn serve(&self, mut socket: TcpStream) {
        // One request per connection is enough for the client (it reconnects as needed).
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        let (head, body) = loop {
            let n = socket.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            raw.extend_from_slice(&buf[..n]);
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).into_owned();
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                while raw.len() < end + 4 + length {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    raw.extend_from_slice(&buf[..n]);
                }
                break (head, raw[end + 4..end + 4 + length].to_vec());
            }
        };
        let mut lines = head.lines();
        let request_line = lines.next().unwrap_or_default().to_string();
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let authorization = lines.find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("authorization")
                .then(|| v.trim().to_string())
        });
        self.log.lock().unwrap().push(format!("{method} {target}"));
        let (status, answer) = if self.fail_next.load(Ordering::SeqCst) > 0 {
            self.fail_next.fetch_sub(1, Ordering::SeqCst);
            (
                500,
                json!({"error_code": 50001, "message": "Error in the backend data store"}),
            )
        } else {
            self.answer(&method, &target, authorization.as_deref(), &body)
        };
        let text = answer.to_string();
        let reason = match status {
            200 => "OK",
            401 => "Unauthorized",
            404 => "Not Found",
            409 => "Conflict",
            422 => "Unprocessable Entity",
            _ => "Internal Server Error",
        };
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        );
        let _ = socket.write_all(response.as_bytes()).await;
        let _ = socket.shutdown().await;
    }

    fn answer(
        &self,
        method: &str,
        target: &str,
        authorization: Option<&str>,
        body: &[u8],
    ) -> (u16, Value) {
        let mut state = self.state.lock().unwrap();
        if let Some(expected) = &state.auth
            && authorization != Some(expected.as_str())
        {
            return (401, json!({"error_code": 40101, "message": "Unauthorized"}));
        }
        let (path, _query) = target.split_once('?').unwrap_or((target, ""));
        let segments: Vec<String> = path
            .trim_start_matches('/')
            .split('/')
            .map(percent_decode)
            .collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let subject_missing = |s: &str| {
            (
                404,
                json!({"error_code": 40401, "message": format!("Subject '{s}' not found.")}),
            )
        };
        let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        match (method, segments.as_slice()) {
            ("GET", ["schemas", "ids", id]) => {
                match id.parse::<u32>().ok().and_then(|id| state.ids.get(&id)) {
                    Some(schema) => (200, json!({"schema": schema})),
                    None => (
                        404,
                        json!({"error_code": 40403, "message": "Schema not found"}),
                    ),
                }
            }
            ("GET", ["subjects", subject, "versions"]) => match state.subjects.get(*subject) {
                Some(v) => (200, json!((1..=v.len()).collect::<Vec<_>>())),
                None => subject_missing(subject),
            },
            ("GET", ["subjects", subject, "versions", which]) => {
                let Some(versions) = state.subjects.get(*subject) else {
                    return subject_missing(subject);
                };
                let index = if *which == "latest" {
                    versions.len().checked_sub(1)
                } else {
                    which
                        .parse::<usize>()
                        .ok()
                        .and_then(|v| v.checked_sub(1))
                        .filter(|i| *i < versions.len())
                };
                match index {
                    Some(i) => (
                        200,
                        json!({"subject": subject, "version": i + 1, "id": versions[i].0, "schema": versions[i].1}),
                    ),
                    None => (
                        404,
                        json!({"error_code": 40402, "message": format!("Version {which} not found.")}),
                    ),
                }
            }
            ("POST", ["subjects", subject, "versions"]) => {
                let Some(schema) = body.get("schema").and_then(Value::as_str) else {
                    return (
                        422,
                        json!({"error_code": 42201, "message": "Invalid schema"}),
                    );
                };
                let (subject, schema) = (subject.to_string(), schema.to_string());
                drop(state);
                let id = self.register(&subject, &schema);
                (200, json!({"id": id}))
            }
            ("POST", ["compatibility", "subjects", subject, "versions", "latest"]) => {
                let Some(versions) = state.subjects.get(*subject) else {
                    return subject_missing(subject);
                };
                let old = apache_avro::Schema::parse_str(&versions.last().unwrap().1).unwrap();
                let new = apache_avro::Schema::parse_str(
                    body.get("schema").and_then(Value::as_str).unwrap_or("null"),
                )
                .unwrap();
                let found = kappa_schema::compat::check(Level::Backward, &new, &[(1, &old)]);
                (
                    200,
                    json!({"is_compatible": found.is_empty(), "messages": found.iter().map(ToString::to_string).collect::<Vec<_>>()}),
                )
            }
            ("GET", ["config"]) => (200, json!({"compatibilityLevel": state.global_level})),
            ("GET", ["config", subject]) => match state.subject_levels.get(*subject) {
                Some(level) => (200, json!({"compatibilityLevel": level})),
                None => (
                    404,
                    json!({"error_code": 40408, "message": format!("Subject '{subject}' does not have subject-level compatibility configured")}),
                ),
            },
            ("PUT", ["config", subject]) => {
                let level = body
                    .get("compatibility")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                state
                    .subject_levels
                    .insert(subject.to_string(), level.clone());
                (200, json!({"compatibility": level}))
            }
            _ => (
                404,
                json!({"error_code": 404, "message": "HTTP 404 Not Found"}),
            ),
        }
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn options(url: &str) -> RegistryOptions {
    RegistryOptions {
        backoff: Duration::from_millis(5),
        timeout: Duration::from_secs(5),
        ..RegistryOptions::new(url)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_registers_and_configures_as_the_api_documents() {
    let stub = Stub::start().await;
    let id1 = stub.register("orders-value", V1);
    let client = ConfluentRegistry::new(options(&stub.url)).unwrap();

    let one = client.by_id(id1).await.unwrap().unwrap();
    assert!(
        one.json.contains("OrderEvent") || one.schema.canonical_form().contains("amount_cents")
    );
    assert!(
        client.by_id(999).await.unwrap().is_none(),
        "40403 is 'no such id'"
    );

    let id2 = client.register("orders-value", V2).await.unwrap();
    assert_ne!(id1, id2);
    assert_eq!(
        client.register("orders-value", V2).await.unwrap(),
        id2,
        "same schema, same id"
    );
    let versions = client.versions("orders-value").await.unwrap();
    assert_eq!(
        versions
            .iter()
            .map(|v| (v.version, v.id))
            .collect::<Vec<_>>(),
        vec![(1, id1), (2, id2)]
    );
    assert_eq!(client.latest("orders-value").await.unwrap().version, 2);

    // Levels: global, then the subject's own.
    assert_eq!(
        client.compatibility("orders-value").await.unwrap(),
        Some(Level::Backward)
    );
    assert_eq!(client.subject_level("orders-value").await.unwrap(), None);
    client
        .set_subject_level("orders-value", Level::FullTransitive)
        .await
        .unwrap();
    assert_eq!(
        client.compatibility("orders-value").await.unwrap(),
        Some(Level::FullTransitive)
    );

    // The registry's own verdict.
    let breaking = include_str!("data/orders-v3-breaking.avsc");
    let verdict = client
        .check_compatibility("orders-value", breaking)
        .await
        .unwrap();
    assert!(!verdict.is_compatible);
    assert!(
        verdict.messages.iter().any(|m| m.contains("amount_cents")),
        "{verdict:?}"
    );

    // Unknown subject: 40401, not retried.
    let before = stub.requests().len();
    match client.versions("nope").await {
        Err(SchemaError::UnknownSubject { subject, .. }) => assert_eq!(subject, "nope"),
        other => panic!("{other:?}"),
    }
    let err = client
        .version("orders-value", Some(9))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("HTTP 404") && err.contains("40402") && err.contains("Version 9 not found"),
        "{err}"
    );
    assert_eq!(stub.requests().len(), before + 2, "4xx answers are final");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_5xx_with_backoff_and_caches_immutable_answers() {
    let stub = Stub::start().await;
    let id = stub.register("orders-value", V1);
    let client = ConfluentRegistry::new(options(&stub.url)).unwrap();
    stub.fail_next.store(2, Ordering::SeqCst);
    let schema = client.by_id(id).await.unwrap().unwrap();
    assert_eq!(schema.id, id);
    assert_eq!(stub.requests().len(), 3, "two 500s, then the answer");
    // Cached: schemas by id never change.
    client.by_id(id).await.unwrap().unwrap();
    assert_eq!(stub.requests().len(), 3);

    // A registry that keeps failing: a clear error after the configured attempts.
    stub.fail_next.store(100, Ordering::SeqCst);
    let err = client.versions("orders-value").await.unwrap_err();
    assert!(
        matches!(err, SchemaError::RegistryUnreachable { attempts: 5, .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("HTTP 500") && text.contains("50001") || text.contains("backend"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_and_silent_registries_fail_clearly() {
    // Nothing listens on this port.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let client = ConfluentRegistry::new(RegistryOptions {
        max_attempts: 2,
        ..options(&url)
    })
    .unwrap();
    let err = client.by_id(1).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, SchemaError::RegistryUnreachable { attempts: 2, .. }),
        "{text}"
    );
    assert!(
        text.contains(&url) && text.contains("cannot connect"),
        "{text}"
    );

    // A server that accepts and never answers: the timeout ends it.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (socket, _) = silent.accept().await.unwrap();
            held.push(socket);
        }
    });
    let client = ConfluentRegistry::new(RegistryOptions {
        max_attempts: 2,
        timeout: Duration::from_millis(200),
        ..options(&url)
    })
    .unwrap();
    let text = client.by_id(1).await.unwrap_err().to_string();
    assert!(text.contains("timed out"), "{text}");
}

/// A server that answers every request with `head` and then `body_bytes` bytes of `{` (a JSON
/// document that never ends), written in 64 KiB pieces until the client stops reading.
async fn endless_server(head: &'static str, body_bytes: u64) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let piece = vec![b'{'; 64 << 10];
                let mut sent = 0u64;
                while sent < body_bytes {
                    if socket.write_all(&piece).await.is_err() {
                        return;
                    }
                    sent += piece.len() as u64;
                }
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_over_max_response_bytes_is_an_error_naming_the_limit_not_an_allocation() {
    // Announced: a 10 GiB Content-Length is refused before a byte of the body is read.
    let announced = endless_server(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10737418240\r\n\r\n",
        1 << 20,
    )
    .await;
    // Not announced: a body without a length is cut off at the limit as it arrives.
    let streamed = endless_server(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
        64 << 20,
    )
    .await;
    for url in [announced, streamed] {
        let client = ConfluentRegistry::new(RegistryOptions {
            max_response_bytes: 1 << 20,
            ..options(&url)
        })
        .unwrap();
        let err = client.by_id(7).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, SchemaError::Registry { .. }), "{text}");
        assert!(
            text.contains(&url)
                && text.contains("more than the limit of 1048576")
                && text.contains("max_response_bytes"),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_from_the_url_and_no_credentials_in_messages() {
    let stub = Stub::start().await;
    let id = stub.register("orders-value", V1);
    // "kappa:s3cret" in base64.
    stub.state.lock().unwrap().auth = Some("Basic a2FwcGE6czNjcmV0".into());
    let with_auth = stub.url.replace("http://", "http://kappa:s3cret@");
    let client = ConfluentRegistry::new(options(&with_auth)).unwrap();
    assert!(client.by_id(id).await.unwrap().is_some());
    assert!(!client.url().contains("s3cret"));
    assert!(!format!("{client:?}").contains("s3cret"));

    let wrong = stub.url.replace("http://", "http://kappa:wrong@");
    let client = ConfluentRegistry::new(options(&wrong)).unwrap();
    let text = client.by_id(id).await.unwrap_err().to_string();
    assert!(
        text.contains("HTTP 401") && text.contains("40101"),
        "{text}"
    );
    assert!(!text.contains("wrong"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wire_decoder_resolves_writer_schemas_through_the_registry() {
    let stub = Stub::start().await;
    let id1 = stub.register("orders-value", V1);
    let client: Arc<dyn SchemaRegistry> =
        Arc::new(ConfluentRegistry::new(options(&stub.url)).unwrap());
    let mapping = Arc::new(TableMapping::from_avro_json(V2).unwrap());
    let v1 = apache_avro::Schema::parse_str(V1).unwrap();
    let body = order_v1(&v1);
    let frame = |id: u32| {
        let mut m = vec![0u8];
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(&body);
        m
    };
    let messages = [frame(id1), frame(4242), frame(id1)];
    let mut decoder = WireDecoder::new(mapping.clone(), client);
    // Decoding is CPU work: it runs on a blocking thread, where registry lookups may wait.
    let (outcome, _decoder) = tokio::task::spawn_blocking(move || {
        let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        (decoder.decode(&refs), decoder)
    })
    .await
    .unwrap();
    let outcome = outcome.unwrap();
    assert_eq!(outcome.records.num_rows(), 2);
    assert_eq!(outcome.decoded, vec![0, 2]);
    assert_eq!(outcome.failed.len(), 1);
    assert!(
        outcome.failed[0].1.contains("unknown schema id 4242"),
        "{:?}",
        outcome.failed
    );

    // A registry outage is an error of the run, never a dead letter.
    stub.fail_next.store(1000, Ordering::SeqCst);
    let down: Arc<dyn SchemaRegistry> = Arc::new(
        ConfluentRegistry::new(RegistryOptions {
            max_attempts: 2,
            ..options(&stub.url)
        })
        .unwrap(),
    );
    let messages = [frame(id1)];
    let mut decoder = WireDecoder::new(mapping, down);
    let result = tokio::task::spawn_blocking(move || {
        let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        decoder.decode(&refs).map(|o| o.failed.len())
    })
    .await
    .unwrap();
    assert!(
        matches!(result, Err(SchemaError::RegistryUnreachable { .. })),
        "{result:?}"
    );
}

fn order_v1(schema: &apache_avro::Schema) -> Vec<u8> {
    use apache_avro::types::Value as Avro;
    let fields = vec![
        ("event_id", Avro::Uuid(uuid::Uuid::from_u128(7))),
        ("event_type", Avro::Enum(1, "PAID".into())),
        ("order_id", Avro::String("o-1".into())),
        (
            "user_id",
            Avro::Union(1, Box::new(Avro::String("u-1".into()))),
        ),
        ("restaurant_id", Avro::String("r-1".into())),
        ("amount_cents", Avro::Long(1250)),
        ("currency", Avro::String("eur".into())),
        ("event_time", Avro::TimestampMillis(1_700_000_000_123)),
    ];
    let record = Avro::Record(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    );
    apache_avro::to_avro_datum(schema, record).unwrap()
}
