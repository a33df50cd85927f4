//! The catalog and its documentation cannot drift apart (what the alert rules and the dashboard
//! query is checked in `tests/deploy`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kappa_metrics::catalog;

mod common;

use common::{read, root};

#[test]
fn metrics_doc_is_generated_from_the_catalog() {
    let path = root().join("docs/metrics.md");
    let doc = read("docs/metrics.md");
    let begin = doc
        .find(catalog::DOC_BEGIN)
        .expect("docs/metrics.md has the BEGIN GENERATED marker");
    let end = doc
        .find(catalog::DOC_END)
        .map(|e| e + catalog::DOC_END.len() + 1)
        .expect("docs/metrics.md has the END GENERATED marker");
    let want = catalog::markdown();
    if doc[begin..end.min(doc.len())] == want {
        return;
    }
    if std::env::var_os("KAPPA_BLESS").is_some() {
        let updated = format!("{}{}{}", &doc[..begin], want, &doc[end.min(doc.len())..]);
        std::fs::write(&path, updated).expect("rewrite docs/metrics.md");
        return;
    }
    panic!(
        "docs/metrics.md differs from kappa_metrics::catalog; run \
         `KAPPA_BLESS=1 cargo test -p kappa-metrics --test docs` and commit the result"
    );
}
