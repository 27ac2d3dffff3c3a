//! The production clock: wall time that advances with `tokio::time`.
//!
//! The wall clock is read once at start; after that, time is the start plus the
//! elapsed `tokio::time::Instant`. Tests that pause and advance tokio's clock
//! therefore move the domain's clock too, without real sleeps.

use std::time::{SystemTime, UNIX_EPOCH};

use domain::Timestamp;
use domain::ports::Clock;
use tokio::time::Instant;

/// Wall time driven by tokio's clock.
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    start_wall: Timestamp,
    start: Instant,
}

impl TokioClock {
    /// A clock anchored at the current wall time.
    #[must_use]
    pub fn new() -> Self {
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        Self { start_wall: Timestamp::from_millis(i64::try_from(ms).unwrap_or(i64::MAX)), start: Instant::now() }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        self.start_wall.plus(self.start.elapsed())
    }
}
