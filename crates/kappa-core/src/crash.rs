//! Deterministic crash points for tests.
//!
//! Built with the `failpoints` feature (the `kappa` binary's `failpoints` feature, which
//! `make test` enables), `crash_point("name")` aborts the process when the `FAILPOINTS`
//! environment variable activates the point, e.g. `FAILPOINTS="runtime::before-commit=2*off->return"`
//! aborts the third time execution reaches it (fail-rs syntax). An abort is as abrupt as a SIGKILL:
//! no destructors, no flushes, no cleanup. Without the feature it compiles to nothing.
//!
//! Points: `runtime::read` (a batch was read), `runtime::write` (rows were encoded into open data
//! files), `runtime::before-commit` (a flush's files are closed, nothing committed),
//! `runtime::between-commits` (the dead-letter table is committed, the main table not yet),
//! `iceberg::after-commit` (the catalog accepted a commit the process has not recorded yet); a
//! backfill's `backfill::read`, `backfill::staged`, `backfill::shard-recorded`,
//! `producer::staged` (a snapshot staged, not swapped in), `producer::committed` (the catalog
//! took it) and `backfill::published` (main published, the dead letters not yet); `kappa
//! maintain`'s `maintain::compact::written` (a partition's new files written, nothing
//! committed), `maintain::expire::staged` (an expiry's archive written, not committed) and
//! `maintain::expire::committed` (the snapshots removed, their files not deleted yet) and
//! `maintain::orphans::deleted` (an orphan deleted, the others not yet).

/// Aborts here if the crash point `name` is active (tests only; see the module docs).
#[inline]
pub fn crash_point(name: &str) {
    #[cfg(feature = "failpoints")]
    if fail::eval(name, |_| ()).is_some() {
        // Written straight to stderr: the test that set the point looks for it.
        #[allow(clippy::print_stderr)]
        {
            eprintln!("kappa: crash point {name} reached: aborting");
        }
        std::process::abort();
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}
