//! The snapshot-summary keys Kappa writes with every commit.
//!
//! | key | value |
//! |---|---|
//! | `kappa.pipeline` | pipeline name: whose state this is |
//! | `kappa.commit-id` | deterministic id of the commit (pipeline + table + input ranges) |
//! | `kappa.offsets` | the **complete** next-offset state, `{"topic":{"0":123}}` |
//! | `kappa.input` | the input ranges of this commit, `{"topic":{"0":[100,123]}}` |
//! | `kappa.watermark` | event-time watermark, µs since the epoch |
//! | `kappa.max-event-time` | newest event time committed so far, µs since the epoch |
//! | `kappa.closed-through` | the newest day the partition gate judged (days since the epoch) |
//! | `kappa.event-times` | the **complete** newest event time per partition, `{"topic":{"0":1700000000000000}}` (judges lateness) |
//! | `kappa.records-in`, `kappa.rows`, `kappa.dead-lettered`, `kappa.duplicates`, `kappa.late-records`, `kappa.quarantined` | counters of this commit |
//! | `kappa.skipped` | the offsets this commit's first range of a partition skipped, as asked (`--accept-missing-history`, a live `start = "latest"`), `{"topic":{"0":[0,start]}}` |
//! | `kappa.main-commit` | on a quarantine-table commit: the main-table commit's event times, judged days, counters and verdicts (JSON), to complete it after a crash |
//! | `kappa.backfill.id`, `kappa.backfill.days`, `kappa.backfill.base-snapshot`, `kappa.backfill.audit` | on a backfill's publish (`overwrite`) on main: its id, the days it replaced, the base it reprocessed up to, and its audit (each day against main before); the id also on the dead letters it appended |
//! | `kappa.dead-lettered.undecodable`, `kappa.dead-lettered.unmappable-schema`, `kappa.dead-lettered.rejected` | `kappa.dead-lettered` by kind (`rejected` includes quality-rule violations); commits before these keys existed carry only the total |

/// A backfill's publish (and its dead-letter append): the backfill's id.
pub const BACKFILL_ID: &str = "kappa.backfill.id";
/// A backfill's publish: the days it replaced, `2026-01-02..2026-01-04`.
pub const BACKFILL_DAYS: &str = "kappa.backfill.days";
/// A backfill's publish: main's snapshot whose position it reprocessed up to (`none`: empty).
pub const BACKFILL_BASE: &str = "kappa.backfill.base-snapshot";
/// A backfill's publish: its audit, each day against main before it (JSON).
pub const BACKFILL_AUDIT: &str = "kappa.backfill.audit";
/// On a quarantine-table commit: what the main table's commit of the same flush records besides
/// its input (event times, judged days, counters, verdicts), to complete it after a crash.
pub const MAIN_COMMIT: &str = "kappa.main-commit";
/// The offsets a first commit of a partition skipped explicitly, `{"topic":{"0":[0,start]}}`.
pub const SKIPPED: &str = "kappa.skipped";
/// Pipeline name.
pub const PIPELINE: &str = "kappa.pipeline";
/// An operator's move of a partition's position (`kappa state skip`), on the empty snapshot that
/// records it: `{"topic":..,"partition":..,"from":..,"to":..}`.
pub const POSITION_MOVE: &str = "kappa.position-move";
/// Deterministic commit id.
pub const COMMIT_ID: &str = "kappa.commit-id";
/// Complete next-offset state.
pub const OFFSETS: &str = "kappa.offsets";
/// Input ranges of the commit.
pub const INPUT: &str = "kappa.input";
/// Event-time watermark (µs).
pub const WATERMARK: &str = "kappa.watermark";
/// Max committed event time (µs).
pub const MAX_EVENT_TIME: &str = "kappa.max-event-time";
/// Complete newest-event-time state per partition (µs).
pub const EVENT_TIMES: &str = "kappa.event-times";
/// The newest day (days since the epoch) the partition gate has judged: days are judged once.
pub const CLOSED_THROUGH: &str = "kappa.closed-through";
/// Records read for this commit.
pub const RECORDS_IN: &str = "kappa.records-in";
/// Rows written to the table by this commit.
pub const ROWS: &str = "kappa.rows";
/// Records dead-lettered in this commit's input.
pub const DEAD_LETTERED: &str = "kappa.dead-lettered";
/// Duplicates dropped in this commit's input.
pub const DUPLICATES: &str = "kappa.duplicates";
/// Records of this commit's input that arrived behind the watermark (appended, counted).
pub const LATE: &str = "kappa.late-records";
/// Rows of this commit's input written to the quarantine table instead.
pub const QUARANTINED: &str = "kappa.quarantined";
/// Dead letters of this commit's input that are not a message of any known schema.
pub const DEAD_LETTERED_UNDECODABLE: &str = "kappa.dead-lettered.undecodable";
/// Dead letters of this commit's input whose writer schema the table cannot read.
pub const DEAD_LETTERED_UNMAPPABLE: &str = "kappa.dead-lettered.unmappable-schema";
/// Dead letters of this commit's input rejected by the logic or a quality rule.
pub const DEAD_LETTERED_REJECTED: &str = "kappa.dead-lettered.rejected";

/// A pipeline's dead letters by kind, summed over the snapshot summaries of its commits to the
/// main table: each commit counts the dead letters of its own input, so the sum is exact over
/// the snapshots the table still has (expiring snapshots drops their counts from the sum).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DeadLetterCounts {
    /// `kappa.dead-lettered`, all kinds.
    pub total: u64,
    /// `kappa.dead-lettered.undecodable`.
    pub undecodable: u64,
    /// `kappa.dead-lettered.unmappable-schema`.
    pub unmappable_schema: u64,
    /// `kappa.dead-lettered.rejected`.
    pub rejected: u64,
    /// Dead letters of commits written before the per-kind keys existed (total only).
    pub unclassified: u64,
}

impl DeadLetterCounts {
    /// `15 (2 undecodable, 7 unmappable schema, 1 rejected)`, for `kappa status`.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "{} ({} undecodable, {} unmappable schema, {} rejected",
            self.total, self.undecodable, self.unmappable_schema, self.rejected
        );
        if self.unclassified > 0 {
            text.push_str(&format!(
                ", {} by older commits that do not record the kind",
                self.unclassified
            ));
        }
        text.push(')');
        text
    }
}

/// Sums the dead-letter counters of `pipeline`'s snapshot summaries (other pipelines' commits and
/// snapshots without Kappa's keys are skipped).
pub fn dead_letter_counts<'a>(
    pipeline: &str,
    summaries: impl IntoIterator<Item = &'a std::collections::HashMap<String, String>>,
) -> DeadLetterCounts {
    let mut counts = DeadLetterCounts::default();
    for properties in summaries {
        if properties.get(PIPELINE).map(String::as_str) != Some(pipeline) {
            continue;
        }
        let count = |key: &str| {
            properties
                .get(key)
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let total = count(DEAD_LETTERED).unwrap_or(0);
        counts.total += total;
        let kinds = [
            count(DEAD_LETTERED_UNDECODABLE),
            count(DEAD_LETTERED_UNMAPPABLE),
            count(DEAD_LETTERED_REJECTED),
        ];
        if kinds.iter().all(Option::is_none) {
            counts.unclassified += total;
            continue;
        }
        let [undecodable, unmappable, rejected] = kinds.map(|k| k.unwrap_or(0));
        counts.undecodable += undecodable;
        counts.unmappable_schema += unmappable;
        counts.rejected += rejected;
    }
    counts
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn commit(pipeline: &str, counters: &[(&str, u64)]) -> HashMap<String, String> {
        let mut properties: HashMap<String, String> = counters
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        properties.insert(PIPELINE.into(), pipeline.into());
        properties
    }

    #[test]
    fn dead_letters_are_summed_by_kind_over_the_pipelines_commits() {
        let commits = [
            commit(
                "orders",
                &[
                    (DEAD_LETTERED, 7),
                    (DEAD_LETTERED_UNDECODABLE, 2),
                    (DEAD_LETTERED_UNMAPPABLE, 4),
                    (DEAD_LETTERED_REJECTED, 1),
                ],
            ),
            commit(
                "orders",
                &[
                    (DEAD_LETTERED, 3),
                    (DEAD_LETTERED_UNDECODABLE, 0),
                    (DEAD_LETTERED_UNMAPPABLE, 3),
                    (DEAD_LETTERED_REJECTED, 0),
                ],
            ),
            // Another pipeline writing to the same table does not count.
            commit(
                "backfill",
                &[(DEAD_LETTERED, 100), (DEAD_LETTERED_UNDECODABLE, 100)],
            ),
            // A commit from before the per-kind keys: only its total is known.
            commit("orders", &[(DEAD_LETTERED, 5)]),
            // A snapshot some other tool wrote.
            HashMap::from([("added-records".to_string(), "9".to_string())]),
        ];
        let counts = dead_letter_counts("orders", commits.iter());
        assert_eq!(
            counts,
            DeadLetterCounts {
                total: 15,
                undecodable: 2,
                unmappable_schema: 7,
                rejected: 1,
                unclassified: 5,
            }
        );
        assert_eq!(
            counts.describe(),
            "15 (2 undecodable, 7 unmappable schema, 1 rejected, 5 by older commits that do not record the kind)"
        );
        assert_eq!(
            dead_letter_counts("nobody", commits.iter()),
            DeadLetterCounts::default()
        );
    }
}
