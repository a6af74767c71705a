//! `MANAGER_LOG=trace` prints a line per call (object, method, duration,
//! outcome), for a manager on a thread and for a manager process, as
//! Python's `log_to_stderr(DEBUG)` does; `debug` keeps creations and frees.

mod common;

use std::process::{Command, Stdio};

use common::{role, ROLE};
use manager::{shared, Manager};

#[shared]
pub struct Gauge {
    level: i64,
}

#[shared]
impl Gauge {
    pub fn new() -> Self {
        Gauge { level: 0 }
    }
    pub fn raise(&mut self, by: i64) -> i64 {
        self.level += by;
        self.level
    }
    pub fn fail(&self) {
        panic!("on purpose");
    }
}

/// Entry point of the child processes this file starts; a no-op otherwise.
#[test]
fn child_role() {
    let Some(role) = role() else { return };
    let b = Manager::builder().register::<Gauge>();
    let mgr = match role.as_str() {
        "thread" => b.spawn_thread().unwrap(),
        "process" => b.start().unwrap(),
        other => panic!("unknown role {other}"),
    };
    let g = GaugeProxy::new(&mgr).unwrap();
    assert_eq!(g.raise(3).unwrap(), 3);
    assert!(g.fail().is_err());
}

fn log_of(role: &str) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["child_role", "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env("MANAGER_LOG", "trace")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "the child failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn each_call_is_a_line_with_its_method_duration_and_outcome() {
    if role().is_some() {
        return;
    }
    for role in ["thread", "process"] {
        let log = log_of(role);
        let line = |method: &str, outcome: &str| {
            log.lines().any(|l| {
                l.contains("TRACE")
                    && l.contains(outcome)
                    && l.contains(&format!("method=\"{method}\""))
                    && l.contains("Gauge")
                    && l.contains("elapsed=")
            })
        };
        assert!(
            line("raise", "call returned"),
            "{role}: no line for raise in\n{log}"
        );
        assert!(
            line("fail", "call failed"),
            "{role}: no line for fail in\n{log}"
        );
    }
}
