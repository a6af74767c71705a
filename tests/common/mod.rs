//! Helpers for integration tests that run real processes: a test binary
//! re-executes itself to play a child role.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The environment variable naming the role a re-executed test binary plays.
pub const ROLE: &str = "MANAGER_TEST_ROLE";

/// Starts this test binary again, running only the test `entry` with `role`
/// and the given environment.
pub fn spawn_role(entry: &str, role: &str, env: &[(&str, String)]) -> Child {
    spawn_role_under(&[], entry, role, env)
}

/// [`spawn_role`] run through `wrapper` (say `ip netns exec NAME`).
pub fn spawn_role_under(
    wrapper: &[&str],
    entry: &str,
    role: &str,
    env: &[(&str, String)],
) -> Child {
    let exe = std::env::current_exe().expect("the test binary has a path");
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.args([entry, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("the test binary can be started")
}

/// The role this process plays, if it was started by `spawn_role`. A role
/// process dies with the test that started it, whatever happens to that test.
pub fn role() -> Option<String> {
    let role = std::env::var(ROLE).ok()?;
    // SAFETY: prctl with PR_SET_PDEATHSIG only sets this process's signal.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    Some(role)
}

/// Waits for `child` to exit, killing it after `limit`; returns whether it succeeded.
pub fn wait_ok(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait works") {
            return status.success();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `cond` until it holds or `limit` passes; for effects that happen
/// asynchronously in another process (a release after a crash).
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}

/// Sends SIGKILL to `pid`.
pub fn sigkill(pid: u32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
}

/// Reads a child's stdout until a line containing `prefix`, and returns the
/// rest of that line. The test harness prints lines of its own, and
/// `test child_role ... ` without a newline just before the role's output.
pub fn read_marked(child: &mut Child, prefix: &str) -> Option<String> {
    use std::io::Read;
    let out = child.stdout.as_mut()?;
    loop {
        // Byte by byte so that nothing past the line is buffered away.
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match out.read(&mut byte) {
                Ok(1) if byte[0] == b'\n' => break,
                Ok(1) => line.push(byte[0]),
                _ if line.is_empty() => return None,
                _ => break,
            }
        }
        let line = String::from_utf8_lossy(&line).into_owned();
        if let Some(at) = line.find(prefix) {
            return Some(line[at + prefix.len()..].to_owned());
        }
    }
}

/// Runs a test's body on a thread of its own and fails the test if the body
/// has not finished within `LIMIT`: a blocking call that a wrong
/// implementation never returns from (`join`, `lock`, `wait`) fails the test
/// instead of hanging it.
pub fn bounded(body: impl FnOnce() + Send + 'static) {
    const LIMIT: Duration = Duration::from_secs(60);
    let (done, finished) = std::sync::mpsc::channel();
    let runner = std::thread::spawn(move || {
        body();
        let _ = done.send(());
    });
    match finished.recv_timeout(LIMIT) {
        Ok(()) => runner.join().expect("the body finished"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match runner.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the body returned without reporting it"),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("the test did not finish within {LIMIT:?}: a call blocked for good")
        }
    }
}

/// The number of threads process `pid` runs now.
pub fn threads_of(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap()
}

/// The CPUs this thread may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is valid; sched_getaffinity fills it and
    // CPU_ISSET only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Limits this thread (and the processes it starts) to CPU `cpu`.
pub fn pin_this_thread(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and sched_setaffinity
    // only read and write it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0,
            "pin the test thread"
        );
    }
}
