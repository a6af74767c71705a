//! The run's record: every criterion sample of every bench, and the summary
//! that sets each operation against the floor measured in the same run.
//!
//! Criterion prints its own estimate per bench; the summary needs them all
//! together, so each `iter_custom` routine also hands its samples to
//! [`record`]. An estimate is the median time per operation over the
//! measurement samples (criterion's warm-up, whose batches double from one
//! iteration, is left out).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use super::Transport;

/// If set, the summary rows are also appended to this file as
/// tab-separated values (for `benches/run.sh`).
pub const TSV_ENV: &str = "MANAGER_BENCH_TSV";

static SAMPLES: Mutex<BTreeMap<String, Vec<(u64, Duration)>>> = Mutex::new(BTreeMap::new());

/// Records one sample of bench `key`: `iters` operations took `elapsed`.
pub fn record(key: &str, iters: u64, elapsed: Duration) {
    let mut s = SAMPLES.lock().unwrap_or_else(|e| e.into_inner());
    s.entry(key.to_owned()).or_default().push((iters, elapsed));
}

/// Nanoseconds per operation of bench `key`, if it ran.
pub fn estimate(key: &str) -> Option<f64> {
    let s = SAMPLES.lock().unwrap_or_else(|e| e.into_inner());
    let samples = s.get(key)?;
    // Warm-up batches are 1, 2, 4, ... iterations; what follows is measured.
    let warm = samples
        .iter()
        .enumerate()
        .take_while(|&(i, &(iters, _))| i < 63 && iters == 1u64 << i)
        .count();
    let measured = if warm < samples.len() {
        &samples[warm..]
    } else {
        &samples[..]
    };
    let mut per_op: Vec<f64> = measured
        .iter()
        .filter(|(iters, _)| *iters > 0)
        .map(|&(iters, d)| d.as_nanos() as f64 / iters as f64)
        .collect();
    if per_op.is_empty() {
        return None;
    }
    per_op.sort_by(f64::total_cmp);
    Some(median(&per_op))
}

/// The median of `sorted` (ascending, not empty).
pub fn median(sorted: &[f64]) -> f64 {
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// What a row's target asks.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    /// No target: shown for comparison.
    None,
    /// Time per operation at most this many times the floor's.
    TimeRatio(f64),
    /// Aggregate calls per second at least this share of the floor's.
    ThroughputShare(f64),
    /// At least this many calls per second.
    MinRate(f64),
    /// At most this many bytes of server memory per entry.
    MaxBytesPerEntry(f64),
}

/// A target and the condition it is stated for.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub goal: Goal,
    /// Stated for one client pinned to one CPU.
    pub pinned_only: bool,
}

impl Target {
    pub const NONE: Target = Target {
        goal: Goal::None,
        pinned_only: false,
    };

    pub const fn new(goal: Goal) -> Target {
        Target {
            goal,
            pinned_only: false,
        }
    }

    pub const fn pinned(mut self) -> Target {
        self.pinned_only = true;
        self
    }

    fn text(&self) -> String {
        let mut t = match self.goal {
            Goal::None => return String::new(),
            Goal::TimeRatio(r) => format!("<={r}x floor time"),
            Goal::ThroughputShare(s) => format!(">={s}x floor calls/s"),
            Goal::MinRate(r) => format!(">={} calls/s", si(r)),
            Goal::MaxBytesPerEntry(b) => format!("<={b} B/entry"),
        };
        if self.pinned_only {
            t.push_str(" (pinned)");
        }
        t
    }
}

/// What a row shows.
pub enum Measure {
    /// A bench's time per operation, against a floor bench's time per
    /// operation times `floor_ops` (an operation of two calls is set against
    /// two round trips).
    Timed {
        key: String,
        floor: Option<(String, f64)>,
    },
    /// Server memory per entry, in bytes (measured outside criterion).
    BytesPerEntry(Option<f64>),
}

/// One line of the summary.
pub struct Row {
    pub transport: Transport,
    /// A stable name, shared with the Python comparison: `get`, `incr`, ...
    pub op: &'static str,
    /// What it is, for people.
    pub label: String,
    /// Calls one operation makes (64 for a 64-deep pipeline).
    pub calls: u64,
    pub measure: Measure,
    pub target: Target,
}

/// `1234567.0` as `1.23M`.
pub fn si(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// Prints the summary and, if [`TSV_ENV`] is set, appends it there.
pub fn summarize(condition: &str, rows: &[Row]) {
    let mut text = String::new();
    let mut tsv = String::new();
    let _ = writeln!(
        text,
        "\n== summary ({condition}): every operation against the floor measured in this run"
    );
    let _ = writeln!(
        text,
        "{:<4} {:<42} {:>10} {:>10} {:>10} {:>7}  {:<32} verdict",
        "sock", "operation", "us/op", "calls/s", "floor us", "ratio", "target"
    );
    for row in rows {
        let (ours_us, rate, floor_us, ratio, value) = match &row.measure {
            Measure::Timed { key, floor } => {
                let Some(ns) = estimate(key) else { continue };
                let floor_ns = floor
                    .as_ref()
                    .and_then(|(k, mult)| estimate(k).map(|f| f * mult));
                let rate = row.calls as f64 * 1e9 / ns;
                // Time against the floor's time; for an aggregate target,
                // calls/s against the floor's calls/s.
                let ratio = floor_ns.map(|f| match row.target.goal {
                    Goal::ThroughputShare(_) => f / ns,
                    _ => ns / f,
                });
                (
                    Some(ns / 1e3),
                    Some(rate),
                    floor_ns.map(|f| f / 1e3),
                    ratio,
                    rate,
                )
            }
            Measure::BytesPerEntry(Some(b)) => (None, None, None, None, *b),
            Measure::BytesPerEntry(None) => continue,
        };
        let applies = !row.target.pinned_only || condition == "pinned";
        let met = match row.target.goal {
            Goal::None => None,
            _ if !applies => None,
            Goal::TimeRatio(max) => ratio.map(|r| r <= max),
            Goal::ThroughputShare(min) => ratio.map(|r| r >= min),
            Goal::MinRate(min) => Some(value >= min),
            Goal::MaxBytesPerEntry(max) => Some(value <= max),
        };
        let verdict = match met {
            None => "",
            Some(true) => "met",
            Some(false) => "MISSED",
        };
        let f2 = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |x| format!("{x:.2}"));
        let us_text = match &row.measure {
            Measure::BytesPerEntry(_) => format!("{value:.0} B/entry"),
            _ => f2(ours_us),
        };
        let ratio_text = ratio.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}x"));
        let rate_text = rate.map_or_else(|| "-".to_owned(), si);
        let _ = writeln!(
            text,
            "{:<4} {:<42} {:>10} {:>10} {:>10} {:>7}  {:<32} {}",
            row.transport.name(),
            row.label,
            us_text,
            rate_text,
            f2(floor_us),
            ratio_text,
            row.target.text(),
            verdict
        );
        let _ = writeln!(
            tsv,
            "{condition}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            row.transport.name(),
            row.op,
            row.label,
            row.calls,
            ours_us.map_or_else(|| format!("{value:.1}"), |u| format!("{u:.3}")),
            rate.map_or_else(|| "-".to_owned(), |r| format!("{r:.0}")),
            floor_us.map_or_else(|| "-".to_owned(), |u| format!("{u:.3}")),
            ratio.map_or_else(|| "-".to_owned(), |r| format!("{r:.3}")),
            row.target.text(),
            if verdict.is_empty() { "-" } else { verdict },
        );
    }
    print!("{text}");
    append_rows(TSV_ENV, &tsv);
}

/// Appends `rows` to the file the environment variable `env` names, if set
/// (for `benches/run.sh`); a failure is reported, not fatal.
pub fn append_rows(env: &str, rows: &str) {
    let Ok(path) = std::env::var(env) else {
        return;
    };
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(rows.as_bytes()));
    if let Err(e) = written {
        eprintln!("bench: cannot append the rows to {path}: {e}");
    }
}
