//! The AWS catalogs (`[catalog] type = "glue" | "s3tables"`, the `aws` feature `make test`
//! builds with). No AWS endpoint exists here, so these only show that the binary has them and
//! reaches them through the AWS SDK: pointed at an endpoint where nothing listens, a replay fails
//! with exit 1 and an error that names the catalog and what it was doing, instead of a refusal
//! of the catalog type.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kappa_integration_tests::{Scene, free_port, kappa};
use kappa_synth::{ArchiveOptions, HistorySpec};

#[test]
fn glue_and_s3tables_are_reached_through_the_aws_sdk_and_an_unreachable_one_is_named() {
    let scene = Scene::local();
    scene.write_local_archive(HistorySpec::new(200), ArchiveOptions::default());
    let config = scene.config("").display().to_string();
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    for (kind, warehouse) in [
        ("glue", "s3://lake/warehouse"),
        (
            "s3tables",
            "arn:aws:s3tables:us-east-1:123456789012:bucket/lake",
        ),
    ] {
        let out = kappa(
            &["replay", "-c", &config],
            &[
                ("KAPPA__CATALOG__TYPE", kind),
                ("KAPPA__CATALOG__URI", endpoint.as_str()),
                ("KAPPA__CATALOG__WAREHOUSE", warehouse),
                ("KAPPA__CATALOG__REGION", "us-east-1"),
                ("KAPPA__CATALOG__ACCESS_KEY_ID", "test"),
                ("KAPPA__CATALOG__SECRET_ACCESS_KEY", "s3cr3t-aws"),
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{kind}: {stderr}");
        assert!(
            !stderr.contains("aws` feature"),
            "{kind}: this build lacks the AWS catalogs: {stderr}"
        );
        assert!(
            stderr.contains("namespace") || stderr.contains("table"),
            "{kind}: the error names what was attempted: {stderr}"
        );
        assert!(!stderr.contains("s3cr3t-aws"), "{kind}: {stderr}");
    }
}
