//! Waiting for a store that does not answer yet: try, pause with
//! [`Backoff`], try again, until it works or shutdown is asked for. Used by
//! the wait for Redis before the service binds its port and by the
//! migrations at start; the adapters' listeners reconnect with the same
//! [`Backoff`].

use std::future::Future;

use adapters::Backoff;
use domain::error_chain;

use crate::shutdown::Shutdown;

/// Runs `attempt` until it succeeds and returns its value, logging each
/// failure (`what` says what is not there yet) and pausing with `backoff`
/// between attempts. `None` when `shutdown` comes first; an attempt already
/// under way is finished first (each is bounded by its store's timeouts), so
/// a migration is never cut in the middle.
pub async fn until_done<T, E, F, Fut>(
    what: &str,
    mut backoff: Backoff,
    shutdown: &mut Shutdown,
    mut attempt: F,
) -> Option<T>
where
    E: std::error::Error,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    loop {
        match attempt().await {
            Ok(value) => return Some(value),
            Err(e) => {
                let pause = backoff.next_pause();
                tracing::warn!(error = %error_chain(&e), retry_in = ?pause, "{what}");
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = shutdown.wait() => {
                        tracing::info!("stopped waiting: shutdown asked for");
                        return None;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::shutdown::shutdown_pair;

    #[derive(Debug, thiserror::Error)]
    #[error("not yet")]
    struct NotYet;

    #[tokio::test(start_paused = true)]
    async fn attempts_repeat_with_growing_pauses_until_one_succeeds() {
        let (_trigger, mut shutdown) = shutdown_pair();
        let tries = AtomicU32::new(0);
        let start = tokio::time::Instant::now();
        let got = until_done("not yet", Backoff::default(), &mut shutdown, || async {
            if tries.fetch_add(1, Ordering::Relaxed) < 3 { Err(NotYet) } else { Ok(7) }
        })
        .await;
        assert_eq!(got, Some(7));
        assert_eq!(tries.load(Ordering::Relaxed), 4);
        // Three pauses: 100 + 200 + 400 ms of (paused, advanced) time.
        assert_eq!(start.elapsed(), Duration::from_millis(700));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_wait_for_a_store_that_never_answers() {
        let (trigger, mut shutdown) = shutdown_pair();
        let tries = Arc::new(AtomicU32::new(0));
        let counted = tries.clone();
        let wait = tokio::spawn(async move {
            until_done("never", Backoff::default(), &mut shutdown, || {
                counted.fetch_add(1, Ordering::Relaxed);
                async { Err::<(), _>(NotYet) }
            })
            .await
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!wait.is_finished(), "it keeps trying while nobody asks it to stop");
        let before = tries.load(Ordering::Relaxed);
        trigger.fire();
        // A loop that ignored shutdown would still be pausing (5 s at a time)
        // when this (paused-clock) second is up.
        let stopped = tokio::time::timeout(Duration::from_secs(1), wait).await;
        assert_eq!(stopped.expect("the wait ends on shutdown").unwrap(), None);
        assert!(tries.load(Ordering::Relaxed) <= before + 1, "no attempt after shutdown");
    }
}
