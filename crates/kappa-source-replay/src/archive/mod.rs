//! The Kafka Connect S3 sink archive: where files are ([`listing`]) and what is in them
//! ([`decode`]).

mod codec;
pub mod decode;
mod header;
pub mod listing;
mod records;
