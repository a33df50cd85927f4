//! SIGTERM (Kubernetes stopping the pod) and SIGINT (Ctrl-C), for the commands that end on them:
//! `kappa run`, and `kappa replay` while its endpoint lingers after the run.

use tracing::info;

/// The process listens for SIGTERM and SIGINT from the moment this is created; until then, and
/// in commands that never create one, a signal ends the process at once as usual.
#[derive(Debug)]
pub struct Shutdown {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Shutdown {
    /// Starts listening (needs a tokio runtime).
    pub fn listen() -> Shutdown {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Shutdown {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        Shutdown {}
    }

    /// Resolves on the first SIGTERM or SIGINT since [`Shutdown::listen`].
    pub async fn received(self) {
        #[cfg(unix)]
        {
            async fn next(signal: Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = next(self.term) => info!("SIGTERM"),
                _ = next(self.int) => info!("SIGINT"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            info!("Ctrl-C");
        }
    }
}
