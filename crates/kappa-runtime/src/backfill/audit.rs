//! The audit: the staged files read back and judged, each day compared with main.

use std::collections::BTreeMap;

use kappa_iceberg::days::DayField;
use kappa_iceberg::diff::{DayDiff, DayStats};
use kappa_quality::{Day, QualityReport};

use super::{Request, Staged, table_error};
use crate::error::RuntimeError;
use crate::spec::Pipeline;

/// What the gates say of the days' new rows, and each day against main.
#[derive(Debug)]
pub struct Audit {
    /// Commit gates over the reprocessed rows, the partition gate on each day.
    pub report: QualityReport,
    /// Each day of the request: main (first) against the backfill (other).
    pub days: Vec<DayDiff>,
}

/// Audits `staged`: its data files read back (what will be published, whichever shard wrote
/// them) against main's rows of the days (its current snapshot), and the gates: the commit
/// gates over the days' new rows with the reprocessing's counts, the partition gate on each
/// day with the table's other days.
pub async fn audit(
    pipeline: &Pipeline,
    staged: &Staged,
    request: &Request,
) -> Result<Audit, RuntimeError> {
    let spec = &pipeline.spec;
    let main = pipeline.main.table();
    let mut after = DayStats::new(
        pipeline.main.name(),
        &spec.event_time_column,
        &request.key_column,
    );
    let mut profile = spec.quality.profile();
    for file in &staged.files {
        let mut failed = None;
        kappa_iceberg::writer::read_data_file(main, file.file_path(), |batch| {
            if failed.is_none() {
                failed = after
                    .add(batch)
                    .map_err(RuntimeError::Sink)
                    .and_then(|()| profile.observe(batch, None).map_err(RuntimeError::Quality))
                    .err();
            }
            Ok(())
        })
        .await
        .map_err(|e| table_error(pipeline.main.name(), "reading a staged file back", e))?;
        if let Some(e) = failed {
            return Err(e);
        }
    }
    profile.observe_rules(&staged.rules);
    let before = DayStats::read(
        main,
        &spec.event_time_column,
        &request.key_column,
        Some(request.days),
    )
    .await?;
    let compared = before.compare(&after);
    let days = request
        .day_set()
        .into_iter()
        .map(|day| {
            compared
                .iter()
                .find(|d| d.day == day)
                .cloned()
                .unwrap_or(DayDiff {
                    day,
                    rows: (0, 0),
                    missing: 0,
                    extra: 0,
                    sums: Vec::new(),
                })
        })
        .collect();
    let mut report = spec.quality.evaluate_commit(&staged.counts, &profile);
    if let Some(field) = DayField::of(main, &spec.event_time_column) {
        let mut rows: BTreeMap<Day, u64> = field
            .rows_in(main)
            .await?
            .into_iter()
            .map(|(day, rows)| (Day(day), rows))
            .collect();
        for day in request.day_set() {
            rows.insert(Day(day), after.rows(day));
        }
        for day in request.day_set() {
            report.extend(spec.quality.evaluate_day(Day(day), &rows));
        }
    }
    Ok(Audit { report, days })
}
