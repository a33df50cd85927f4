//! The same replay with the archive and the warehouse on SeaweedFS S3 and the catalog on
//! PostgreSQL gives the same table content as on the local filesystem with SQLite.
//! Needs `make services-up` (the endpoints come from `dev/services.sh env`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kappa_integration_tests::{Scene, assert_table_matches, replay};
use kappa_synth::{ArchiveOptions, HistorySpec};

#[test]
fn s3_archive_and_warehouse_with_a_postgres_catalog_give_the_same_table() {
    let spec = HistorySpec::new(12_000);
    let local = Scene::local();
    let local_expected = local.write_local_archive(spec.clone(), ArchiveOptions::default());
    replay(&local.config(""), &[]);
    let local_read = local.read("pyiceberg", "orders");

    let remote = Scene::s3_postgres("s3pg");
    let expected = remote.write_s3_archive(spec, ArchiveOptions::default());
    assert_eq!(expected, local_expected, "same spec, same archive content");
    let config = remote.config("");
    let first = replay(&config, &[]);
    assert_eq!(first["complete"], true, "{first}");
    for engine in ["pyiceberg", "duckdb"] {
        let read = remote.read(engine, "orders");
        assert_table_matches(&read, &expected);
        assert_eq!(read["checksum"], local_read["checksum"], "{engine}");
    }
    // Idempotent there too.
    let second = replay(&config, &[]);
    assert_eq!(second["commits"].as_u64(), Some(0), "{second}");
    assert_eq!(second["snapshot_id"], first["snapshot_id"]);
}
