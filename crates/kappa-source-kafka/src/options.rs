//! How to connect: the validated `[source.kafka]` turned into librdkafka settings.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;

/// Where a partition the table holds nothing of starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    /// The oldest retained offset.
    #[default]
    Earliest,
    /// The partition's end when it is first assigned.
    Latest,
}

/// Settings of the live source.
#[derive(Clone)]
pub struct KafkaOptions {
    /// `host:port[,host:port]`.
    pub bootstrap_servers: String,
    /// The topic.
    pub topic: String,
    /// Consumer group.
    pub group_id: String,
    /// Start of partitions without table state.
    pub start: StartAt,
    /// How long to wait at start for the brokers and the topic.
    pub startup_timeout: Duration,
    /// Extra librdkafka settings, passed through unchanged.
    pub properties: Vec<(String, String)>,
    /// Messages decoded into one batch at most.
    pub max_batch: usize,
    /// How long the first message of a batch waits for more before the batch is handed on.
    pub linger: Duration,
}

impl std::fmt::Debug for KafkaOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaOptions")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("topic", &self.topic)
            .field("group_id", &self.group_id)
            .field("start", &self.start)
            .field("startup_timeout", &self.startup_timeout)
            .field(
                "properties",
                &self
                    .properties
                    .iter()
                    .map(|(k, v)| (k.as_str(), if is_secret(k) { "***" } else { v.as_str() }))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl KafkaOptions {
    /// Options with the defaults for everything but the connection.
    pub fn new(bootstrap_servers: &str, topic: &str, group_id: &str) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.to_string(),
            topic: topic.to_string(),
            group_id: group_id.to_string(),
            start: StartAt::Earliest,
            startup_timeout: Duration::from_secs(30),
            properties: Vec::new(),
            max_batch: 50_000,
            linger: Duration::from_millis(100),
        }
    }

    /// librdkafka settings of a client: the user's properties, then what Kappa owns. With
    /// `group`, a group consumer that never commits or stores offsets by itself.
    pub(crate) fn client_config(&self, group: bool) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("enable.partition.eof", "false")
            .set("allow.auto.create.topics", "false")
            .set_log_level(RDKafkaLogLevel::Warning);
        if group {
            config
                .set("group.id", &self.group_id)
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set(
                    "auto.offset.reset",
                    match self.start {
                        StartAt::Earliest => "earliest",
                        StartAt::Latest => "latest",
                    },
                );
        }
        config
    }
}

/// Whether a property's value must never be shown (passwords, secrets, JAAS configs, tokens,
/// private keys).
pub fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "secret", "jaas", "token", "key"]
        .iter()
        .any(|s| name.contains(s))
}
