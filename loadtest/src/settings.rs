//! What the scenarios read from the environment. goose owns the command line
//! (users, rate, run time, `--scenarios`, reports), so the knobs of our own
//! live in `CARTD_LOADTEST_*` variables:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `CARTD_LOADTEST_THINK` | `1-3` | think time between a user's steps, in seconds: `0` (or `off`) for none, `A-B` for a random pause between A and B seconds (decimals allowed), `1`/`on` for the default |
//! | `CARTD_LOADTEST_ITEMS` | `100` | the scenarios use items `inv-1` ..= `inv-N` (and `flash-1`) |
//! | `CARTD_LOADTEST_WEIGHTS` | `shopper=4,browser=4,tutorial=2,flashsale=1,expirystorm=1` | how users are shared among the scenarios that `--scenarios` selects |
//! | `CARTD_LOADTEST_STORM_PERIOD` | `5` | seconds between two waves of the expiry storm |
//! | `CARTD_LOADTEST_FLASH_STOCK` | unset | the units `flash-1` was seeded with; when set, its counts are watched during the run (needs `-H`) |
//! | `CARTD_LOADTEST_TTL_SECS` | unset | cartd's session TTL; when set, a tutorial-route cart that answers `404` sooner than that after the add that made it fails the run (the `/v1` routes state their deadline themselves) |
//! | `CARTD_LOADTEST_SUMMARY` | unset | write the summary to this `.json` file and a Markdown copy beside it (`.md`) |

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

/// The scenarios, by goose machine name, in registration order.
pub const SCENARIOS: [&str; 5] = ["shopper", "browser", "tutorial", "flashsale", "expirystorm"];

/// Settings of one run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Pause between two steps of a user, `None` for no pause.
    pub think: Option<(Duration, Duration)>,
    /// Items `inv-1` ..= `inv-<items>`.
    pub items: u32,
    /// Weight of each scenario, in [`SCENARIOS`] order.
    pub weights: [usize; 5],
    /// Time between two expiry-storm waves.
    pub storm_period: Duration,
    /// Units `flash-1` was seeded with, when known.
    pub flash_stock: Option<u64>,
    /// Where to write the JSON summary.
    pub summary: Option<PathBuf>,
    /// cartd's session TTL, when known: the tutorial routes state no
    /// deadline, so a cart they made lives at least this long.
    pub session_ttl: Option<Duration>,
    /// All users share one HTTP client whose pool keeps at most this many idle
    /// connections (`None`: every user has its own client and connection, as
    /// a browser would). With tens of thousands of users, one connection per
    /// user needs more file descriptors than a process may open here.
    pub shared_pool: Option<usize>,
}

impl Settings {
    /// Reads the `CARTD_LOADTEST_*` variables.
    ///
    /// # Errors
    /// A value that does not parse, named in the message.
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let think =
            parse_think(var("CARTD_LOADTEST_THINK").as_deref().unwrap_or("on")).context("CARTD_LOADTEST_THINK")?;
        let items = match var("CARTD_LOADTEST_ITEMS") {
            Some(v) => v.trim().parse::<u32>().context("CARTD_LOADTEST_ITEMS: not a whole number")?,
            None => 100,
        };
        if items == 0 {
            bail!("CARTD_LOADTEST_ITEMS: must be at least 1");
        }
        let weights = match var("CARTD_LOADTEST_WEIGHTS") {
            Some(v) => parse_weights(&v).context("CARTD_LOADTEST_WEIGHTS")?,
            None => [4, 4, 2, 1, 1],
        };
        let storm_period = match var("CARTD_LOADTEST_STORM_PERIOD") {
            Some(v) => {
                let secs = v.trim().parse::<f64>().context("CARTD_LOADTEST_STORM_PERIOD: not a number")?;
                if !(0.1..=600.0).contains(&secs) {
                    bail!("CARTD_LOADTEST_STORM_PERIOD: must be between 0.1 and 600 seconds");
                }
                Duration::from_secs_f64(secs)
            }
            None => Duration::from_secs(5),
        };
        let flash_stock = match var("CARTD_LOADTEST_FLASH_STOCK") {
            Some(v) => Some(v.trim().parse::<u64>().context("CARTD_LOADTEST_FLASH_STOCK: not a whole number")?),
            None => None,
        };
        let summary = var("CARTD_LOADTEST_SUMMARY").map(PathBuf::from);
        let session_ttl = match var("CARTD_LOADTEST_TTL_SECS") {
            Some(v) => Some(Duration::from_secs(
                v.trim().parse::<u64>().context("CARTD_LOADTEST_TTL_SECS: not a whole number of seconds")?,
            )),
            None => None,
        };
        let shared_pool = match var("CARTD_LOADTEST_SHARED_POOL") {
            Some(v) => match v.trim().parse::<usize>().context("CARTD_LOADTEST_SHARED_POOL: not a whole number")? {
                0 => None,
                n => Some(n),
            },
            None => None,
        };
        Ok(Self { think, items, weights, storm_period, flash_stock, summary, session_ttl, shared_pool })
    }

    /// The think time as text, for the summary.
    pub fn think_label(&self) -> String {
        match self.think {
            None => "off".to_owned(),
            Some((a, b)) => format!("{}-{} s", a.as_secs_f64(), b.as_secs_f64()),
        }
    }
}

fn parse_think(v: &str) -> anyhow::Result<Option<(Duration, Duration)>> {
    let v = v.trim().to_ascii_lowercase();
    match v.as_str() {
        "0" | "off" | "no" | "false" | "none" => return Ok(None),
        "1" | "on" | "yes" | "true" => return Ok(Some((Duration::from_secs(1), Duration::from_secs(3)))),
        _ => {}
    }
    let (a, b) = v.split_once('-').with_context(|| format!("{v:?} is not 0, 1 or a range A-B in seconds"))?;
    let a: f64 = a.trim().parse().with_context(|| format!("{a:?} is not a number of seconds"))?;
    let b: f64 = b.trim().parse().with_context(|| format!("{b:?} is not a number of seconds"))?;
    if !(a >= 0.0 && b >= a && b <= 600.0) {
        bail!("the range must satisfy 0 <= A <= B <= 600");
    }
    if b == 0.0 {
        return Ok(None);
    }
    Ok(Some((Duration::from_secs_f64(a), Duration::from_secs_f64(b))))
}

fn parse_weights(v: &str) -> anyhow::Result<[usize; 5]> {
    let mut weights = [0; 5];
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, weight) = part.split_once('=').with_context(|| format!("{part:?} is not name=weight"))?;
        let index = SCENARIOS
            .iter()
            .position(|s| s.eq_ignore_ascii_case(name.trim()))
            .with_context(|| format!("unknown scenario {name:?}; known: {}", SCENARIOS.join(", ")))?;
        weights[index] = weight.trim().parse().with_context(|| format!("{weight:?} is not a whole number"))?;
    }
    if weights.iter().all(|w| *w == 0) {
        bail!("every weight is 0");
    }
    Ok(weights)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn think_time_reads_off_default_and_ranges() {
        assert_eq!(parse_think("0").unwrap(), None);
        assert_eq!(parse_think("off").unwrap(), None);
        assert_eq!(parse_think("on").unwrap(), Some((Duration::from_secs(1), Duration::from_secs(3))));
        assert_eq!(parse_think("0.1-0.5").unwrap(), Some((Duration::from_millis(100), Duration::from_millis(500))));
        assert!(parse_think("3-1").is_err());
        assert!(parse_think("soon").is_err());
    }

    #[test]
    fn weights_name_scenarios_and_leave_the_others_at_zero() {
        assert_eq!(parse_weights("shopper=3, flashsale=1").unwrap(), [3, 0, 0, 1, 0]);
        assert!(parse_weights("nope=1").is_err());
        assert!(parse_weights("shopper=0").is_err());
    }
}
