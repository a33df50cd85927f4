//! Kafka source errors, each naming the brokers, topic or partition.

use kappa_core::{Classify, ErrorKind};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// The live source failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSourceError {
    /// librdkafka refused a setting (a bad name or value in `[source.kafka] properties`).
    #[error("[source.kafka]: librdkafka refused the configuration: {0}")]
    Config(String),
    /// The brokers did not answer within the startup timeout.
    #[error(
        "Kafka at {brokers}: no broker answered within {waited_secs} s ({reason}); check [source.kafka] bootstrap_servers and the network, or raise startup_timeout"
    )]
    Unreachable {
        /// `bootstrap_servers`.
        brokers: String,
        /// Seconds waited.
        waited_secs: u64,
        /// The last error.
        reason: String,
    },
    /// The topic does not exist (Kappa never creates topics).
    #[error(
        "Kafka at {brokers}: topic {topic:?} does not exist (waited {waited_secs} s); create it, or fix [source.kafka] topic"
    )]
    MissingTopic {
        /// `bootstrap_servers`.
        brokers: String,
        /// The topic.
        topic: String,
        /// Seconds waited.
        waited_secs: u64,
    },
    /// A client operation failed.
    #[error("Kafka topic {topic}: {operation}: {source}")]
    Client {
        /// The topic.
        topic: String,
        /// What was being done.
        operation: String,
        /// librdkafka's error.
        source: Box<KafkaError>,
    },
    /// Messages could not be decoded because the schema registry failed (bad messages never
    /// fail the source: they become dead letters).
    #[error("Kafka topic {topic} partition {partition}: {source}")]
    Schema {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The registry or mapping error.
        source: Box<kappa_schema::SchemaError>,
    },
    /// The consumer thread stopped.
    #[error("Kafka topic {topic}: the consumer thread stopped: {message}")]
    Stopped {
        /// The topic.
        topic: String,
        /// Why.
        message: String,
    },
}

impl Classify for KafkaSourceError {
    fn kind(&self) -> ErrorKind {
        match self {
            KafkaSourceError::Config(_) | KafkaSourceError::MissingTopic { .. } => ErrorKind::User,
            KafkaSourceError::Unreachable { .. } => ErrorKind::Transient,
            KafkaSourceError::Client { source, .. } => match source.rdkafka_error_code() {
                Some(code) if is_fatal(code) => ErrorKind::User,
                _ => ErrorKind::Transient,
            },
            KafkaSourceError::Schema { source, .. } => source.kind(),
            KafkaSourceError::Stopped { .. } => ErrorKind::Internal,
        }
    }
}

/// Errors a consumer cannot recover from by waiting: credentials, authorization, a fatal
/// client state. Everything else (brokers down, leader changes) librdkafka retries by itself.
pub(crate) fn is_fatal(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Fatal
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::InvalidConfig
            | RDKafkaErrorCode::UnsupportedSASLMechanism
            | RDKafkaErrorCode::IllegalSASLState
    )
}
