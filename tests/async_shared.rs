//! The async face of a user's `#[shared]` type (DESIGN §2a): the
//! `AsyncCounterProxy` that `#[shared]` declares beside `CounterProxy`, on
//! tokio's multi-thread and current-thread runtimes and under a plain
//! executor, and its conversions to and from the blocking face.

use std::future::Future;
use std::time::Duration;

use futures::future::join_all;
use manager::{shared, Client, Manager, Proxy};

/// The counter of DESIGN §2, with borrowed and byte arguments.
#[shared]
pub struct Counter {
    value: i64,
}

#[shared]
impl Counter {
    /// A counter starting at `start`.
    pub fn new(start: i64) -> Self {
        Counter { value: start }
    }

    /// Adds `by` and returns the new value.
    pub fn incr(&mut self, by: i64) -> i64 {
        self.value += by;
        self.value
    }

    /// The value.
    pub fn get(&self) -> i64 {
        self.value
    }

    /// Adds the length of `label`: a borrowed argument.
    pub fn add_len(&mut self, label: &str) -> i64 {
        self.value += label.len() as i64;
        self.value
    }

    /// The value divided by `d`, or why not: the method's own `Result`.
    pub fn checked_div(&self, d: i64) -> Result<i64, String> {
        self.value
            .checked_div(d)
            .ok_or_else(|| format!("cannot divide {} by {d}", self.value))
    }

    /// The value's little-endian bytes: bytes out.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.value.to_le_bytes().to_vec()
    }

    /// Adds every byte of `data`: bytes in, borrowed.
    pub fn add_bytes(&mut self, data: &[u8]) -> i64 {
        self.value += data.iter().map(|&b| i64::from(b)).sum::<i64>();
        self.value
    }
}

/// How long one test may take before it fails instead of hanging.
const LIMIT: Duration = Duration::from_secs(60);

fn manager() -> manager::Result<Manager> {
    Manager::builder().register::<Counter>().start()
}

async fn connect(mgr: &Manager) -> manager::Result<Client> {
    Client::connect_async(mgr.address(), mgr.auth_key()).await
}

fn assert_send<T: Send>(_: &T) {}

/// `test`, failed if it takes longer than [`LIMIT`].
async fn within_limit(test: impl Future<Output = manager::Result<()>>) -> manager::Result<()> {
    tokio::time::timeout(LIMIT, test)
        .await
        .expect("the test finishes within its limit")
}

/// Runs `f` on a thread of its own, failed if it takes longer than [`LIMIT`].
fn on_thread_within_limit<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    let out = rx
        .recv_timeout(LIMIT)
        .expect("the test finishes within its limit, without a panic");
    thread.join().expect("the test thread ends");
    out
}

/// A blocking call of the test, off the runtime's threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("the blocking call does not panic")
}

async fn constructor_and_calls_give_the_methods_results(mgr: &Manager) -> manager::Result<()> {
    let client = connect(mgr).await?;
    let c = AsyncCounterProxy::new(&client, 5).await?;
    assert_eq!(c.incr(2).await?, 7);
    assert_eq!(c.get().await?, 7);
    assert_eq!(c.add_len("four").await?, 11);
    assert_eq!(c.checked_div(2).await?, Ok(5));
    assert_eq!(
        c.checked_div(0).await?,
        Err("cannot divide 11 by 0".to_owned())
    );
    assert_eq!(c.to_bytes().await?, 11i64.to_le_bytes().to_vec());
    assert_eq!(c.add_bytes(&[1, 2, 3]).await?, 17);
    // Long enough that the blocking proxy would write it apart from the frame.
    let long = vec![1u8; 1 << 20];
    assert_eq!(c.add_bytes(&long).await?, 17 + (1 << 20));
    assert_eq!(
        c.to_bytes().await?,
        (17i64 + (1 << 20)).to_le_bytes().to_vec()
    );
    Ok(())
}

async fn a_thousand_concurrent_calls_from_one_client_each_run_once(
    mgr: &Manager,
) -> manager::Result<()> {
    let client = connect(mgr).await?;
    let c = AsyncCounterProxy::new(&client, 0).await?;
    let replies = join_all((0..1000).map(|_| c.incr(1))).await;
    let mut values = replies.into_iter().collect::<manager::Result<Vec<i64>>>()?;
    values.sort_unstable();
    assert_eq!(values, (1..=1000).collect::<Vec<i64>>());
    assert_eq!(c.get().await?, 1000);
    Ok(())
}

async fn futures_are_send_and_spawned_tasks_call_one_object(mgr: &Manager) -> manager::Result<()> {
    let client = connect(mgr).await?;
    let creating = AsyncCounterProxy::new(&client, 0);
    assert_send(&creating);
    let c = creating.await?;
    let incr = c.incr(1);
    assert_send(&incr);
    assert_eq!(incr.await?, 1);
    // Borrowed arguments keep the future `Send`; never polled, it sends nothing.
    let label = String::from("label");
    let bytes = vec![7u8; 3];
    assert_send(&c.add_len(&label));
    assert_send(&c.add_bytes(&bytes));
    assert_eq!(c.get().await?, 1);

    let tasks: Vec<tokio::task::JoinHandle<manager::Result<()>>> = (0..4)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                for _ in 0..25 {
                    c.incr(1).await?;
                }
                Ok::<_, manager::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("the task does not panic")?;
    }
    assert_eq!(c.get().await?, 101);

    // A task that creates an object of its own through a clone of the client.
    let theirs = client.clone();
    let made = tokio::spawn(async move {
        let d = AsyncCounterProxy::new(&theirs, 3).await?;
        d.incr(1).await?;
        Ok::<_, manager::Error>(d)
    })
    .await
    .expect("the task does not panic")?;
    assert_eq!(made.get().await?, 4);
    Ok(())
}

async fn either_face_converts_into_the_other_and_calls_the_same_object(
    mgr: &Manager,
) -> manager::Result<()> {
    let client = connect(mgr).await?;
    let c = AsyncCounterProxy::new(&client, 5).await?;
    assert_eq!(c.incr(2).await?, 7);

    let face: CounterProxy = c.clone().into();
    let (seen, face) = blocking(move || {
        let seen = face.get()?;
        face.incr(10)?;
        Ok::<_, manager::Error>((seen, face))
    })
    .await?;
    assert_eq!(seen, 7, "the blocking face sees the async increments");
    assert_eq!(c.get().await?, 17, "the async face sees the blocking ones");

    let again: AsyncCounterProxy = face.into();
    assert_eq!(again.incr(1).await?, 18);
    // The converted proxy holds the reference on its own.
    drop(c);
    assert_eq!(again.get().await?, 18);
    Ok(())
}

async fn a_token_of_the_async_face_serves_the_blocking_face(mgr: &Manager) -> manager::Result<()> {
    let client = connect(mgr).await?;
    let c = AsyncCounterProxy::new(&client, 1).await?;
    let key = mgr.auth_key().clone();
    let token = {
        let c = c.clone();
        blocking(move || c.to_token()).await?
    };
    let (after, token) = blocking(move || {
        let b = CounterProxy::from_token(&token, &key)?;
        let after = b.incr(41)?;
        Ok::<_, manager::Error>((after, b.to_token()?))
    })
    .await?;
    assert_eq!(after, 42);
    assert_eq!(c.get().await?, 42);

    // And back: a token of the blocking face, redeemed by the async one.
    let key = mgr.auth_key().clone();
    let back = blocking(move || AsyncCounterProxy::from_token(&token, &key)).await?;
    assert_eq!(back.incr(1).await?, 43);
    Ok(())
}

/// Each scenario as a test on each of tokio's runtimes.
macro_rules! on_tokio_runtimes {
    ($($scenario:ident),* $(,)?) => {
        mod multi_thread {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() -> manager::Result<()> {
                    let mgr = super::manager()?;
                    super::within_limit(super::$scenario(&mgr)).await
                }
            )*
        }

        mod current_thread {
            $(
                #[tokio::test]
                async fn $scenario() -> manager::Result<()> {
                    let mgr = super::manager()?;
                    super::within_limit(super::$scenario(&mgr)).await
                }
            )*
        }
    };
}

on_tokio_runtimes!(
    constructor_and_calls_give_the_methods_results,
    a_thousand_concurrent_calls_from_one_client_each_run_once,
    futures_are_send_and_spawned_tasks_call_one_object,
    either_face_converts_into_the_other_and_calls_the_same_object,
    a_token_of_the_async_face_serves_the_blocking_face,
);

/// No tokio runtime at all: `futures`' executor on a plain thread, where
/// the blocking face is called directly.
#[test]
fn the_async_face_runs_under_an_executor_without_tokio() -> manager::Result<()> {
    let mgr = manager()?;
    on_thread_within_limit(move || {
        futures::executor::block_on(async {
            constructor_and_calls_give_the_methods_results(&mgr).await?;
            a_thousand_concurrent_calls_from_one_client_each_run_once(&mgr).await?;

            let client = connect(&mgr).await?;
            let c = AsyncCounterProxy::new(&client, 5).await?;
            assert_send(&c.incr(1));
            assert_eq!(c.incr(2).await?, 7);
            let face: CounterProxy = c.clone().into();
            assert_eq!(face.incr(10)?, 17);
            assert_eq!(c.get().await?, 17);
            let again: AsyncCounterProxy = face.into();
            assert_eq!(again.incr(1).await?, 18);

            let token = c.to_token()?;
            let b = CounterProxy::from_token(&token, mgr.auth_key())?;
            assert_eq!(b.incr(1)?, 19);
            assert_eq!(c.get().await?, 19);
            Ok(())
        })
    })
}
