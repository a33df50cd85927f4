//! Snapshot summary totals: iceberg-rust's `update_snapshot_summaries` is crate-private.

use std::collections::HashMap;

use iceberg::spec::Summary;

/// Each total with the added and removed counts that move it.
const TOTALS: [(&str, &str, &str); 6] = [
    ("total-data-files", "added-data-files", "deleted-data-files"),
    (
        "total-delete-files",
        "added-delete-files",
        "removed-delete-files",
    ),
    ("total-records", "added-records", "deleted-records"),
    ("total-files-size", "added-files-size", "removed-files-size"),
    (
        "total-position-deletes",
        "added-position-deletes",
        "removed-position-deletes",
    ),
    (
        "total-equality-deletes",
        "added-equality-deletes",
        "removed-equality-deletes",
    ),
];

/// Adds the `total-*` entries to `summary` from its `added-*` / `deleted-*` ones and the
/// parent's totals (0 without a parent). A total the parent does not carry (or that does not
/// parse) is left out, as Iceberg's reference implementation does: it would be wrong.
pub(super) fn update_totals(summary: &mut HashMap<String, String>, parent: Option<&Summary>) {
    for (total, added, removed) in TOTALS {
        let previous = match parent {
            None => Some(0),
            Some(parent) => parent
                .additional_properties
                .get(total)
                .and_then(|v| v.parse::<u64>().ok()),
        };
        let Some(previous) = previous else {
            summary.remove(total);
            continue;
        };
        let count = |key: &str| {
            summary
                .get(key)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let value = (previous + count(added)).saturating_sub(count(removed));
        summary.insert(total.to_string(), value.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iceberg::spec::Operation;

    fn summary(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn totals_move_by_what_was_added_and_removed() {
        let parent = Summary {
            operation: Operation::Append,
            additional_properties: summary(&[
                ("total-records", "100"),
                ("total-data-files", "4"),
                ("total-files-size", "4000"),
            ]),
        };
        let mut new = summary(&[
            ("added-records", "30"),
            ("deleted-records", "50"),
            ("added-data-files", "1"),
            ("deleted-data-files", "2"),
            ("added-files-size", "700"),
            ("removed-files-size", "2100"),
        ]);
        update_totals(&mut new, Some(&parent));
        assert_eq!(new["total-records"], "80");
        assert_eq!(new["total-data-files"], "3");
        assert_eq!(new["total-files-size"], "2600");
        assert!(
            !new.contains_key("total-delete-files"),
            "a total the parent lacks stays out"
        );

        let mut first = summary(&[("added-records", "7")]);
        update_totals(&mut first, None);
        assert_eq!(first["total-records"], "7");
        assert_eq!(first["total-delete-files"], "0");
    }
}
