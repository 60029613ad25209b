//! Background loops owned by a running server (relays, workers): started with a stop signal,
//! stopped together at shutdown.

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Loops started together, stopped together.
pub struct Background {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Default for Background {
    fn default() -> Self {
        Background::new()
    }
}

impl Background {
    pub fn new() -> Background {
        Background { stop: watch::channel(false).0, tasks: Vec::new() }
    }

    /// A receiver that changes when the loops are to stop (`rx.changed()` resolves).
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Starts a loop; it should return soon after the stop signal changes.
    pub fn spawn(&mut self, f: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.push(tokio::spawn(f));
    }

    /// Signals the loops to stop and waits for them.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
