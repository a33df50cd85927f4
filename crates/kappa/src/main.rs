//! `kappa`: the command line. Parses flags, loads the pipeline configuration and runs a command;
//! every failure is printed with what and where, and mapped to the documented exit code.

mod arenas;
mod backfill;
mod cli;
mod config_print;
mod demo;
mod diff;
mod endpoint;
mod live;
mod maintain;
mod output;
mod quality;
mod replay;
mod schema;
mod shutdown;
mod state;
mod status;
mod validate;

use std::process::ExitCode;

use clap::Parser;
use kappa_core::ErrorKind;

/// Exit codes (the CLI contract).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Failure.
    pub const FAILURE: u8 = 1;
    /// Usage or configuration error.
    pub const USAGE: u8 = 2;
    /// A quality gate blocked the data.
    pub const BLOCKED: u8 = 3;
    /// A schema is not compatible.
    pub const SCHEMA: u8 = 4;
    /// `kappa diff`: the tables differ.
    pub const DIFFER: u8 = 5;
}

/// An error for the user: the message and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// Printed to stderr.
    pub message: String,
    /// Process exit code.
    pub code: u8,
}

impl Failure {
    fn config(e: kappa_config::ConfigError) -> Self {
        Failure {
            message: e.to_string(),
            code: exit::USAGE,
        }
    }

    fn from_kind(kind: ErrorKind, message: String) -> Self {
        let code = match kind {
            ErrorKind::User => exit::USAGE,
            ErrorKind::Blocked => exit::BLOCKED,
            _ => exit::FAILURE,
        };
        Failure { message, code }
    }
}

impl From<kappa_pipeline::PipelineError> for Failure {
    fn from(e: kappa_pipeline::PipelineError) -> Self {
        Failure::from_kind(e.kind, e.message)
    }
}

fn main() -> ExitCode {
    arenas::limit();
    // Test builds only: crash points configured by the FAILPOINTS environment variable.
    #[cfg(feature = "failpoints")]
    let _crash_points = fail::FailScenario::setup();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    kappa_iceberg::catalog::prepare_file_io();
    let log_format = cli.log_format.parse().unwrap_or_default();
    kappa_metrics::init_tracing(log_format, &cli.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            output::error(&format!("cannot start the async runtime: {e}"));
            return ExitCode::from(exit::FAILURE);
        }
    };
    let outcome = runtime.block_on(cli::dispatch(cli));
    // Everything the command does has been awaited: the runtime's idle threads (up to one per
    // archive object fetched at once) are left to the exit rather than joined one by one.
    runtime.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::from(exit::OK),
        Err(failure) => {
            output::error(&failure.message);
            ExitCode::from(failure.code)
        }
    }
}
