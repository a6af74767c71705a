//! DESIGN §4 and part 4 of the semantics issue: a process that ended
//! normally has had its references dropped by the time its parent's
//! `wait()` returns. `examples/pass_proxies.rs` reads `stats()` right after
//! its workers exit and fails with "N objects leaked" otherwise; run it many
//! times in a row.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::bounded;

/// The example binary `cargo test` built beside this test binary.
fn example(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("examples").join(name);
    path.exists().then_some(path)
}

#[test]
fn pass_proxies_finds_nothing_leaked_200_times_in_a_row() {
    let Some(exe) = example("pass_proxies") else {
        // `cargo test --workspace` builds the examples; `--test` alone does not.
        eprintln!("skipped: examples/pass_proxies is not built (run `cargo test --workspace`)");
        return;
    };
    bounded(move || {
        for run in 0..200 {
            let out = Command::new(&exe).output().expect("the example starts");
            assert!(
                out.status.success(),
                "run {run} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    });
}
