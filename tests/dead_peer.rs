//! A TCP peer that falls silent without closing its socket (its machine lost
//! power, its cable was pulled, a firewall began dropping its packets) ends
//! abnormally within the manager's dead-peer timeout: a lock it held becomes
//! free (DESIGN §4).
//!
//! Made real with a network namespace: the client runs inside it, reaching
//! the manager over a veth pair, and the test takes the namespace's end of
//! the pair down while the client still has its socket open. That needs
//! root; elsewhere the test says why it skips.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{process_gone, read_marked, role, spawn_role_under};
use manager::{AuthKey, LockProxy, Manager, Proxy};

/// The manager's bound for a silent peer in this test.
const BOUND: Duration = Duration::from_secs(3);
/// What the kernel may add to the bound: probes are counted in whole
/// seconds and the retransmission timer backs off.
const MARGIN: Duration = Duration::from_secs(30);

/// Entry point of the client process this file starts; a no-op otherwise.
#[test]
fn child_role() {
    let Some(role) = role() else { return };
    assert_eq!(role, "hold-lock");
    let key = AuthKey::from_hex(&std::env::var("KEY").unwrap()).unwrap();
    let lock = LockProxy::from_token(&std::env::var("LOCK").unwrap(), &key).unwrap();
    assert!(lock.acquire_timeout(Duration::from_secs(20)).unwrap());
    println!("done=held");
    // Holds the lock, and its sockets, until the test kills it.
    std::thread::sleep(Duration::from_secs(600));
}

/// A network namespace joined to this one by a veth pair, removed on drop.
struct Namespace {
    name: String,
    host_link: String,
    guest_link: String,
    host_ip: String,
    guest_ip: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Namespace {
    fn create() -> Result<Namespace, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("creating a network namespace needs root".into());
        }
        let tag = std::process::id() % 100_000;
        let subnet = tag % 250 + 1;
        let ns = Namespace {
            name: format!("manager-dead-peer-{tag}"),
            host_link: format!("mdp{tag}a"),
            guest_link: format!("mdp{tag}b"),
            host_ip: format!("10.213.{subnet}.1"),
            guest_ip: format!("10.213.{subnet}.2"),
        };
        // From here on, drop removes whatever part was made.
        let host = format!("{}/24", ns.host_ip);
        let guest = format!("{}/24", ns.guest_ip);
        ip(&["netns", "add", &ns.name])?;
        ip(&[
            "link",
            "add",
            &ns.host_link,
            "type",
            "veth",
            "peer",
            "name",
            &ns.guest_link,
        ])?;
        ip(&["link", "set", &ns.guest_link, "netns", &ns.name])?;
        ip(&["addr", "add", &host, "dev", &ns.host_link])?;
        ip(&["link", "set", &ns.host_link, "up"])?;
        ns.inside(&["addr", "add", &guest, "dev", &ns.guest_link])?;
        ns.inside(&["link", "set", &ns.guest_link, "up"])?;
        ns.inside(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Runs `ip` inside the namespace.
    fn inside(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["netns", "exec", &self.name, "ip"];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Starts this test binary inside the namespace, playing `role`.
    fn spawn_role(&self, role: &str, env: &[(&str, String)]) -> Child {
        spawn_role_under(
            &["ip", "netns", "exec", &self.name],
            "child_role",
            role,
            env,
        )
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the pair, and with it
        // ours; the second command is for a namespace that was never made.
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.host_link]);
    }
}

#[test]
fn a_silent_peers_lock_is_free_within_the_dead_peer_timeout() {
    if role().is_some() {
        return;
    }
    let ns = match Namespace::create() {
        Ok(ns) => ns,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let mgr = Manager::builder()
        .address(format!("tcp:{}:0", ns.host_ip).parse().unwrap())
        .dead_peer_timeout(BOUND)
        .spawn_thread()
        .unwrap();
    let lock = mgr.lock().unwrap();
    let env = [
        ("KEY", mgr.auth_key().to_hex()),
        ("LOCK", lock.to_token().unwrap()),
    ];
    let mut child = ns.spawn_role("hold-lock", &env);
    let held = read_marked(&mut child, "done=");
    if held.as_deref() != Some("held") {
        let _ = child.kill();
        panic!("the client in the namespace did not take the lock: {held:?}");
    }
    assert!(!lock.try_acquire().unwrap(), "the client holds the lock");

    // Silence: the client's socket stays open, its packets go nowhere.
    ns.inside(&["link", "set", &ns.guest_link, "down"]).unwrap();
    let silent = Instant::now();
    let acquired = lock.acquire_timeout(BOUND + MARGIN).unwrap();
    let took = silent.elapsed();
    let alive = !process_gone(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        acquired,
        "the lock of a peer silent for {took:?} is still held"
    );
    assert!(
        alive,
        "the client must still be running: silent, not closed"
    );
    println!("a silent peer's lock was free after {took:?} (bound {BOUND:?})");
}
