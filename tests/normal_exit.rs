//! DESIGN §4: a client that ends normally (says goodbye first) leaves the
//! state as Python would; one that ends abnormally has its holds undone.
//! Real processes that return, call `exit`, or panic; real threads that end.

mod common;

use std::process::Child;
use std::thread;
use std::time::Duration;

use common::{bounded, read_marked, role, spawn_role, wait_ok};
use manager::{
    AuthKey, Client, ConditionProxy, LockProxy, Manager, Proxy, RLockProxy, SemaphoreProxy,
};

const LONG: Duration = Duration::from_secs(20);
const LIMIT: Duration = Duration::from_secs(30);

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set for child roles"))
}

/// Entry point of the child processes this file starts; a no-op otherwise.
#[test]
fn child_role() {
    let Some(role) = role() else { return };
    let key = AuthKey::from_hex(&env("KEY")).unwrap();
    match role.as_str() {
        "take-permit-and-return" => {
            let s = SemaphoreProxy::from_token(&env("SEMAPHORE"), &key).unwrap();
            assert!(s.acquire_timeout(LONG).unwrap());
            println!("done=permit");
        }
        "take-signal-and-return" => {
            let s = SemaphoreProxy::from_token(&env("SEMAPHORE"), &key).unwrap();
            println!("done=waiting");
            assert!(s.acquire_timeout(LONG).unwrap());
            drop(s); // and with it the client: a goodbye
            println!("done=signal");
        }
        "take-lock-and-exit" => {
            let l = LockProxy::from_token(&env("LOCK"), &key).unwrap();
            assert!(l.acquire_timeout(LONG).unwrap());
            println!("done=lock");
            // The proxy and its client are still alive: the exit says goodbye.
            std::process::exit(0);
        }
        "take-rlock-and-condition-and-return" => {
            let r = RLockProxy::from_token(&env("RLOCK"), &key).unwrap();
            let c = ConditionProxy::from_token(&env("CONDITION"), &key).unwrap();
            assert!(r.acquire_timeout(LONG).unwrap());
            assert!(r.acquire_timeout(LONG).unwrap());
            assert!(c.acquire_timeout(LONG).unwrap());
            println!("done=reentrant");
        }
        "take-lock-and-permit-and-panic" => {
            let l = LockProxy::from_token(&env("LOCK"), &key).unwrap();
            let s = SemaphoreProxy::from_token(&env("SEMAPHORE"), &key).unwrap();
            assert!(l.acquire_timeout(LONG).unwrap());
            assert!(s.acquire_timeout(LONG).unwrap());
            println!("done=panicking");
            panic!("a worker panics while holding a raw acquire()");
        }
        "block-in-get-take-lock-and-exit" => {
            // One client, so one session for both threads.
            let client = Client::connect(&env("ADDRESS").parse().unwrap(), &key).unwrap();
            // A worker takes the lock and then waits in `get`, both on the
            // client's own connection (it calls first); this thread exits
            // meanwhile.
            let (blocking, waits) = std::sync::mpsc::channel();
            let worker = client.clone();
            thread::spawn(move || {
                let q: manager::QueueProxy<u32> = worker.lookup("q").unwrap();
                let l: LockProxy = worker.lookup("l").unwrap();
                assert!(l.acquire_timeout(LONG).unwrap());
                blocking.send(()).unwrap();
                let got = q.get();
                panic!("the get returned {got:?}; the process should have exited");
            });
            waits.recv().unwrap();
            client.ping().unwrap();
            println!("done=lock");
            std::process::exit(0);
        }
        other => panic!("unknown role {other}"),
    }
}

/// Runs a child role with the key and `tokens`, checks that it reached
/// `marker`, and waits for it to exit; returns whether it succeeded.
fn run(mgr: &Manager, role: &str, marker: &str, tokens: &[(&str, String)]) -> bool {
    let mut child = start(mgr, role, tokens);
    assert_eq!(read_marked(&mut child, "done=").as_deref(), Some(marker));
    wait_ok(&mut child, LIMIT)
}

fn start(mgr: &Manager, role: &str, tokens: &[(&str, String)]) -> Child {
    let mut env = vec![("KEY", mgr.auth_key().to_hex())];
    env.extend(tokens.iter().cloned());
    spawn_role("child_role", role, &env)
}

fn manager() -> Manager {
    Manager::builder().start().unwrap()
}

#[test]
fn a_permit_taken_by_a_worker_that_returned_stays_taken_and_may_be_released() {
    bounded(|| {
        let mgr = manager();
        let s = mgr.bounded_semaphore(1).unwrap();
        let token = s.to_token().unwrap();
        assert!(run(
            &mgr,
            "take-permit-and-return",
            "permit",
            &[("SEMAPHORE", token)]
        ));
        // The worker's exit has been settled by the time wait() returned.
        assert!(!s.try_acquire().unwrap(), "the permit stays taken");
        s.release().unwrap(); // Python: fine, the value is 1 again
        assert!(s.try_acquire().unwrap());
        s.release().unwrap();
        assert!(matches!(s.release(), Err(manager::Error::NotHeld(_))));
    });
}

#[test]
fn a_signal_taken_by_a_consumer_that_left_is_not_received_twice() {
    bounded(|| {
        let mgr = manager();
        let s = mgr.semaphore(0).unwrap();
        let token = s.to_token().unwrap();
        let mut consumer = start(&mgr, "take-signal-and-return", &[("SEMAPHORE", token)]);
        assert_eq!(
            read_marked(&mut consumer, "done=").as_deref(),
            Some("waiting")
        );
        s.release().unwrap(); // one signal
        assert_eq!(
            read_marked(&mut consumer, "done=").as_deref(),
            Some("signal")
        );
        assert!(wait_ok(&mut consumer, LIMIT));
        assert!(
            !s.try_acquire().unwrap(),
            "a second consumer must not receive a signal nobody sent"
        );
    });
}

#[test]
fn a_lock_held_by_a_worker_that_called_exit_stays_locked_and_anyone_may_release_it() {
    bounded(|| {
        let mgr = manager();
        let l = mgr.lock().unwrap();
        let token = l.to_token().unwrap();
        assert!(run(&mgr, "take-lock-and-exit", "lock", &[("LOCK", token)]));
        assert!(!l.try_acquire().unwrap(), "Python keeps it locked");
        l.release().unwrap();
        assert!(l.try_acquire().unwrap());
    });
}

#[test]
fn an_rlock_and_a_condition_held_by_a_worker_that_returned_are_released() {
    bounded(|| {
        let mgr = manager();
        let r = mgr.rlock().unwrap();
        let c = mgr.condition().unwrap();
        let tokens = [
            ("RLOCK", r.to_token().unwrap()),
            ("CONDITION", c.to_token().unwrap()),
        ];
        assert!(run(
            &mgr,
            "take-rlock-and-condition-and-return",
            "reentrant",
            &tokens
        ));
        // Nobody else could release them: they are free at once.
        assert!(r.try_acquire().unwrap());
        assert!(c.try_acquire().unwrap());
    });
}

#[test]
fn a_worker_that_panics_holding_a_raw_acquire_ends_abnormally() {
    bounded(|| {
        let mgr = manager();
        let l = mgr.lock().unwrap();
        let s = mgr.bounded_semaphore(1).unwrap();
        let tokens = [
            ("LOCK", l.to_token().unwrap()),
            ("SEMAPHORE", s.to_token().unwrap()),
        ];
        assert!(!run(
            &mgr,
            "take-lock-and-permit-and-panic",
            "panicking",
            &tokens
        ));
        // A crash is undone (asynchronously: the manager sees the socket close).
        assert!(l.acquire_timeout(LONG).unwrap());
        assert!(s.acquire_timeout(LONG).unwrap());
    });
}

/// A client thread that takes `l` and then ends, normally or by a panic.
fn take_on_a_thread(l: &LockProxy, panic: bool) {
    let l = l.clone();
    let ended = thread::spawn(move || {
        assert!(l.acquire_timeout(LONG).unwrap());
        if panic {
            panic!("a client thread panics holding a lock");
        }
    })
    .join();
    assert_eq!(ended.is_err(), panic);
}

fn threads_end_as_python_says(client: &Client) {
    let l = client.lock().unwrap();
    take_on_a_thread(&l, false);
    // A plain Lock outlives the thread that took it, as in Python.
    assert!(!l.try_acquire().unwrap());
    l.release().unwrap();
    take_on_a_thread(&l, true);
    // A thread that panicked while holding it ended abnormally: undone.
    assert!(l.acquire_timeout(LONG).unwrap());
}

#[test]
fn a_thread_that_ends_keeps_a_plain_lock_and_one_that_panics_does_not() {
    bounded(|| {
        let mgr = Manager::builder().spawn_thread().unwrap();
        // In the manager's process, without a socket.
        threads_end_as_python_says(&mgr);
        // Over a socket.
        let remote = Client::connect(mgr.address(), mgr.auth_key()).unwrap();
        threads_end_as_python_says(&remote);
    });
}

#[test]
fn dropping_a_client_settles_its_session_before_the_drop_returns() {
    bounded(|| {
        let mgr = manager();
        let base = mgr.stats().unwrap().objects;
        let sem = mgr.semaphore(1).unwrap();
        mgr.publish("sem", &sem).unwrap();
        let client = Client::connect(mgr.address(), mgr.auth_key()).unwrap();
        let lists: Vec<_> = (0..20).map(|_| client.list::<u32>().unwrap()).collect();
        // Connections of other threads of this client say goodbye too.
        let c = client.clone();
        let on_thread = thread::spawn(move || c.dict::<u8, u8>().unwrap())
            .join()
            .unwrap();
        let theirs: SemaphoreProxy = client.lookup("sem").unwrap();
        assert!(theirs.try_acquire().unwrap());
        assert_eq!(mgr.stats().unwrap().objects, base + 22);
        drop((lists, on_thread, theirs, client));
        // No polling: the goodbye was answered after the session ended.
        assert_eq!(mgr.stats().unwrap().objects, base + 1);
        assert!(!sem.try_acquire().unwrap(), "the permit stays taken");
    });
}

#[test]
fn an_exit_while_another_thread_waits_in_a_call_is_still_a_normal_end() {
    bounded(|| {
        let mgr = manager();
        let (q, l) = (mgr.queue::<u32>(0).unwrap(), mgr.lock().unwrap());
        mgr.publish("q", &q).unwrap();
        mgr.publish("l", &l).unwrap();
        let tokens = [("ADDRESS", mgr.address().to_string())];
        assert!(run(
            &mgr,
            "block-in-get-take-lock-and-exit",
            "lock",
            &tokens
        ));
        // A normal end: the lock stays taken, as in Python, and the waiting
        // get took nothing.
        assert!(!l.try_acquire().unwrap(), "the lock stays taken");
        q.put(3).unwrap();
        assert_eq!(q.get_timeout(LONG).unwrap(), Some(3));
    });
}
