//! The pause between attempts to reach a store that does not answer: it starts
//! short, doubles with every further failure up to a ceiling, and starts over
//! after a success. One definition for every retry loop: the expiry and stock
//! listeners here, and the application's waits for Redis and for migrations.

use std::time::Duration;

/// A doubling pause sequence, `first`, `2 × first`, … capped at `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// The pause after the first failure is `first`; the later ones double, up to `max`.
    #[must_use]
    pub fn new(first: Duration, max: Duration) -> Self {
        Self { first, max, next: first }
    }

    /// The pause to wait now; the one after it is twice as long (up to the cap).
    pub fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (pause * 2).min(self.max);
        pause
    }

    /// The pause the next [`Backoff::next_pause`] would return, without moving on.
    #[must_use]
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// Starts over from `first` (after a success).
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

impl Default for Backoff {
    /// 100 ms, doubling up to 5 s.
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(5))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_cap_and_start_over_after_a_reset() {
        let mut b = Backoff::default();
        let pauses: Vec<u64> = (0..8).map(|_| u64::try_from(b.next_pause().as_millis()).unwrap()).collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.peek(), Duration::from_millis(100));
        assert_eq!(b.next_pause(), Duration::from_millis(100));
    }
}
