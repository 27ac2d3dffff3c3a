//! How a loop learns that it should stop: one [`ShutdownTrigger`], any number
//! of [`Shutdown`] signals. Every loop the service runs (the sweeper, the
//! expiry listener, the live stock hub, the retries while a store is not
//! reachable) waits on one of these beside its work and logs when it stops.

use tokio::sync::watch;

/// A shutdown signal that any number of tasks can wait on.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

/// The sending half of [`Shutdown`].
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// A new trigger and its signal.
#[must_use]
pub fn shutdown_pair() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    /// Tells every waiter to stop.
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    /// Completes once shutdown has been asked for (or the trigger dropped).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Whether shutdown has been asked for (or the trigger dropped), for a
    /// loop that checks between steps rather than waiting.
    #[must_use]
    pub fn is_requested(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// [`Shutdown::wait`], taking the signal: for APIs that want a future
    /// that owns what it waits on.
    pub async fn stopped(mut self) {
        self.wait().await;
    }
}
