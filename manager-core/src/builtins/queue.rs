//! `Queue` and `JoinableQueue`: FIFO queues with an optional bound
//! (Python's `queue.Queue` and `multiprocessing.JoinableQueue`). Blocked
//! `get`s, `put`s and `join`s wait on the wait core: an item put goes
//! straight to the longest-waiting `get`, a slot freed to the
//! longest-waiting `put`, and the last `task_done` wakes every `join`.

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::builtins::wait::{wait_turn, Policy, Wait, Waiters};
use crate::builtins::{
    async_twin, builtin_proxy, create, create_async, methods, proxy_methods, take_usize,
    write_option, Builtin, Elem, Methods, Stored,
};
use crate::client::Client;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::proxy::Handle;
use crate::shared::End;
use crate::sync::lock;
use crate::wire::codec::{Decoder, Encoder};

struct State {
    items: VecDeque<Stored>,
    /// Items put and not yet marked done (`JoinableQueue`).
    unfinished: u64,
    /// Items each connection took from a joinable queue and has not marked
    /// done, oldest first: they go back to the front of the queue if that
    /// connection ends abnormally (at-least-once, and `join` returns).
    taken: HashMap<u64, VecDeque<Stored>>,
    /// Callers of `get` waiting for an item: a `put` hands it over.
    getters: Waiters<Stored>,
    /// Callers of `put` waiting for room: a `get` reserves them a slot.
    putters: Waiters,
    /// Callers of `join` waiting for every item to be done: the last
    /// `task_done` wakes them all.
    joiners: Waiters,
}

/// What a queue and a joinable queue share.
struct Core {
    /// 0 for no bound.
    maxsize: usize,
    /// A `JoinableQueue`: `task_done` and `join`, and taken items tracked.
    joinable: bool,
    state: Mutex<State>,
}

methods! {
    /// A joinable queue's methods, by wire id; a plain queue has those
    /// before `task_done` ([`PlainQueueMethods`]).
    enum QueueMethod -> QueueCall {
        0 Put(Elem) => put "(&self, item: T)",
        1 PutTimeout(Elem, Wait) => put_timeout "(&self, item: T, timeout: Duration) -> bool",
        2 TryPut(Elem) => try_put "(&self, item: T) -> bool",
        3 Get => get "(&self) -> T",
        4 GetTimeout(Wait) => get_timeout "(&self, timeout: Duration) -> Option<T>",
        5 TryGet => try_get "(&self) -> Option<T>",
        6 Len => len "(&self) -> usize",
        7 IsEmpty => is_empty "(&self) -> bool",
        8 IsFull => is_full "(&self) -> bool",
        9 TaskDone => task_done "(&self)",
        10 Join => join "(&self)",
        11 JoinTimeout(Wait) => join_timeout "(&self, timeout: Duration) -> bool",
        12 Unfinished => unfinished "(&self) -> u64",
    }
}

/// A plain queue's methods: a joinable queue's before `task_done`.
pub(crate) struct PlainQueueMethods;

impl Methods for PlainQueueMethods {
    const NAMES: &'static [&'static str] = QueueMethod::NAMES
        .split_at(QueueMethod::TaskDone as usize)
        .0;
    const SIGNATURES: &'static [&'static str] = QueueMethod::SIGNATURES
        .split_at(QueueMethod::TaskDone as usize)
        .0;
    type Call<'a> = QueueCall;

    fn parse(id: u32, args: &mut Decoder<'_>) -> Result<Option<QueueCall>> {
        if id < QueueMethod::TaskDone as u32 {
            QueueMethod::parse(id, args)
        } else {
            Ok(None)
        }
    }
}

impl Core {
    fn new(args: &mut Decoder<'_>, joinable: bool) -> Result<Core> {
        Ok(Core {
            maxsize: take_usize(args)?,
            joinable,
            state: Mutex::new(State {
                items: VecDeque::new(),
                unfinished: 0,
                taken: HashMap::new(),
                getters: Waiters::default(),
                putters: Waiters::default(),
                joiners: Waiters::default(),
            }),
        })
    }

    /// Whether a bounded queue has no room, counting the slots reserved
    /// for waiting putters that have not woken yet.
    fn full(&self, s: &State) -> bool {
        self.maxsize > 0 && s.items.len() + s.putters.pending() >= self.maxsize
    }

    /// Puts `item` once there is room; `false` (and the item dropped) if
    /// there was none in time.
    fn put(&self, ctx: &Context, item: Elem, wait: Wait) -> Result<bool> {
        let item = Stored::keep(ctx, item);
        let mut s = lock(&self.state);
        // Run again after parking, the call's slot is waiting for it.
        if ctx.is_resuming() || self.full(&s) {
            // A slot reserved for a caller that is gone is the next one's.
            let (waited, slot) = wait_turn(
                ctx,
                &self.state,
                s,
                wait,
                |s| &mut s.putters,
                |s, ()| free_slot(s),
            )?;
            if slot.is_none() {
                return Ok(false);
            }
            s = waited;
        }
        s.unfinished = s.unfinished.saturating_add(1);
        if let Err(item) = s.getters.hand_off(item) {
            s.items.push_back(item);
        }
        Ok(true)
    }

    /// Takes the oldest item, if there is one in time.
    fn get(&self, ctx: &Context, wait: Wait) -> Result<Option<Stored>> {
        let mut s = lock(&self.state);
        // Nobody waits for an item while there is one: an item put goes to
        // a waiting getter first. Run again after parking, the call's item
        // is the one handed to it.
        if !ctx.is_resuming() {
            if let Some(item) = s.items.pop_front() {
                free_slot(&mut s);
                return Ok(Some(item));
            }
        }
        // An item handed to a caller that is gone is the next one's.
        wait_turn(ctx, &self.state, s, wait, |s| &mut s.getters, put_front).map(|(_, item)| item)
    }

    /// Marks one item done: the oldest the calling connection took, or, for
    /// a task done on another's behalf (allowed, as in Python), the oldest
    /// another connection took; so no connection ends holding more taken
    /// items than are unfinished.
    fn task_done(&self, conn: u64) -> Result<()> {
        let mut s = lock(&self.state);
        if s.unfinished == 0 {
            return Err(Error::TaskDoneTooOften);
        }
        s.unfinished -= 1;
        let from = if s.taken.contains_key(&conn) {
            Some(conn)
        } else {
            s.taken.keys().next().copied()
        };
        let done = from.and_then(|from| {
            let list = s.taken.get_mut(&from)?;
            let item = list.pop_front();
            if list.is_empty() {
                s.taken.remove(&from);
            }
            item
        });
        if s.unfinished == 0 {
            while s.joiners.hand_off(()).is_ok() {}
        }
        drop(s);
        drop(done);
        Ok(())
    }

    /// Waits until every item put has been marked done, until `deadline`
    /// (`None`: forever); whether they were.
    fn join(&self, ctx: &Context, wait: Wait) -> Result<bool> {
        let s = lock(&self.state);
        // Run again after parking, the call's place is among the joiners.
        if s.unfinished == 0 && !ctx.is_resuming() {
            return Ok(true);
        }
        let (_s, done) = wait_turn(ctx, &self.state, s, wait, |s| &mut s.joiners, |_, ()| {})?;
        Ok(done.is_some())
    }

    /// Puts `item`, taken by a caller who left before its reply, back at
    /// the front, where it was.
    fn put_back(&self, item: Stored) {
        put_front(&mut lock(&self.state), item);
    }

    /// Remembers that `conn` took `item` from a joinable queue.
    fn took(&self, conn: u64, item: Stored) {
        lock(&self.state)
            .taken
            .entry(conn)
            .or_default()
            .push_back(item);
    }

    /// Connection `conn` ended. The items it took and did not mark done
    /// were not finished: after an abnormal end they go back to the front of
    /// the queue, in the order they were taken, still counted unfinished;
    /// after a normal one they stay unfinished, as in Python.
    fn release_all(&self, conn: u64, end: End) {
        let mut s = lock(&self.state);
        let Some(mut taken) = s.taken.remove(&conn) else {
            return;
        };
        // An item taken is held as a counted permit is.
        if !Policy::Counted.gives_back(end) {
            drop(s);
            drop(taken);
            return;
        }
        tracing::debug!(
            conn,
            items = taken.len(),
            "a consumer ended abnormally: its unfinished items go back to the queue"
        );
        while let Some(item) = taken.pop_front() {
            if let Err(item) = s.getters.hand_off(item) {
                taken.push_front(item);
                break;
            }
        }
        for item in taken.into_iter().rev() {
            s.items.push_front(item);
        }
    }

    /// Runs a queue method.
    fn call(self: &Arc<Self>, ctx: &Context, call: QueueCall, out: &mut Encoder<'_>) -> Result<()> {
        match call {
            QueueCall::Put(item) => self.put(ctx, item, Wait::Forever).map(drop),
            QueueCall::PutTimeout(item, wait) => out.put(&self.put(ctx, item, wait)?),
            QueueCall::TryPut(item) => out.put(&self.put(ctx, item, Wait::No)?),
            QueueCall::Get => {
                // A wait without deadline ends with an item or an error.
                let item = self.get(ctx, Wait::Forever)?;
                let item = item.ok_or_else(|| Error::Timeout("queue get".into()))?;
                item.write(out);
                self.hand_out(ctx, item);
                Ok(())
            }
            QueueCall::GetTimeout(wait) => self.get_option(ctx, wait, out),
            QueueCall::TryGet => self.get_option(ctx, Wait::No, out),
            QueueCall::Len => out.put(&lock(&self.state).items.len()),
            QueueCall::IsEmpty => out.put(&lock(&self.state).items.is_empty()),
            QueueCall::IsFull => out.put(&self.full(&lock(&self.state))),
            QueueCall::TaskDone => self.task_done(ctx.connection_id()),
            QueueCall::Join => self.join(ctx, Wait::Forever).map(drop),
            QueueCall::JoinTimeout(wait) => out.put(&self.join(ctx, wait)?),
            QueueCall::Unfinished => out.put(&lock(&self.state).unfinished),
        }
    }

    /// A `get` that writes `Option<T>`.
    fn get_option(
        self: &Arc<Self>,
        ctx: &Context,
        wait: Wait,
        out: &mut Encoder<'_>,
    ) -> Result<()> {
        let item = self.get(ctx, wait)?;
        write_option(out, item.as_ref());
        if let Some(item) = item {
            self.hand_out(ctx, item);
        }
        Ok(())
    }

    /// Settles what becomes of `item`, taken by this call, if it is not
    /// finished: a joinable queue's goes back when its connection ends
    /// abnormally; a plain queue's, if the reply carrying it cannot be
    /// delivered.
    fn hand_out(self: &Arc<Self>, ctx: &Context, item: Stored) {
        if self.joinable {
            self.took(ctx.connection_id(), item);
        } else {
            let core = Arc::clone(self);
            ctx.on_undelivered(move || core.put_back(item));
        }
    }
}

/// A slot came free: the longest-waiting putter's, if any.
fn free_slot(s: &mut State) {
    let _ = s.putters.hand_off(());
}

/// `item` goes to the front: to the longest-waiting getter, if any.
fn put_front(s: &mut State, item: Stored) {
    if let Err(item) = s.getters.hand_off(item) {
        s.items.push_front(item);
    }
}

pub(crate) struct QueueObject(Arc<Core>);
pub(crate) struct JoinableQueueObject(Arc<Core>);

impl Builtin for QueueObject {
    const NAME: &'static str = "manager::Queue";
    const ELEMENTS: usize = 1;
    type Methods = PlainQueueMethods;

    fn construct(_ctx: &Context, args: &mut Decoder<'_>) -> Result<Self> {
        Core::new(args, false).map(|c| QueueObject(Arc::new(c)))
    }

    fn call(&self, ctx: &Context, call: QueueCall, out: &mut Encoder<'_>) -> Result<()> {
        self.0.call(ctx, call, out)
    }
}

impl Builtin for JoinableQueueObject {
    const NAME: &'static str = "manager::JoinableQueue";
    const ELEMENTS: usize = 1;
    type Methods = QueueMethod;

    fn construct(_ctx: &Context, args: &mut Decoder<'_>) -> Result<Self> {
        Core::new(args, true).map(|c| JoinableQueueObject(Arc::new(c)))
    }

    fn call(&self, ctx: &Context, call: QueueCall, out: &mut Encoder<'_>) -> Result<()> {
        self.0.call(ctx, call, out)
    }

    const TRACKS_CONNECTIONS: bool = true;

    fn disconnected(&self, conn: u64, end: End) {
        self.0.release_all(conn, end)
    }
}

/// The methods both queue proxies have.
macro_rules! queue_methods {
    ($proxy:ident / $async:ident) => {
        proxy_methods! {
            impl[T: Serialize + DeserializeOwned] $proxy<T> / $async;

            /// Puts `item`, waiting while the queue is full (Python: `q.put(x)`).
            ///
            /// # Errors
            /// Connection errors.
            pub [wait] fn put(&self, item: T) -> () = |h| {
                let e = h.elem(&item)?;
                h.call(QueueMethod::Put as u32, |a| a.put(&e))
            }

            /// Puts `item`, waiting at most `timeout` for room; `false` (and the
            /// item dropped) if there was none (Python: `q.put(x, timeout=t)`).
            ///
            /// # Errors
            /// Connection errors.
            pub [wait] fn put_timeout(&self, item: T, timeout: Duration) -> bool = |h| {
                let e = h.elem(&item)?;
                h.call(QueueMethod::PutTimeout as u32, |a| {
                    a.put(&e)?;
                    a.put(&timeout)
                })
            }

            /// Puts `item` if there is room now (Python: `q.put_nowait(x)`).
            ///
            /// # Errors
            /// Connection errors.
            pub fn try_put(&self, item: T) -> bool = |h| {
                let e = h.elem(&item)?;
                h.call(QueueMethod::TryPut as u32, |a| a.put(&e))
            }

            /// Takes the oldest item, waiting for one (Python: `q.get()`).
            ///
            /// # Errors
            /// Connection errors.
            pub [wait] fn get(&self) -> T = |h| { h.call(QueueMethod::Get as u32, |_| Ok(())) }

            /// Takes the oldest item, waiting at most `timeout` (Python: `q.get(timeout=t)`).
            ///
            /// # Errors
            /// Connection errors.
            pub [wait] fn get_timeout(&self, timeout: Duration) -> Option<T> = |h| {
                h.call(QueueMethod::GetTimeout as u32, |a| a.put(&timeout))
            }

            /// Takes the oldest item if there is one now (Python: `q.get_nowait()`).
            ///
            /// # Errors
            /// Connection errors.
            pub fn try_get(&self) -> Option<T> = |h| { h.call(QueueMethod::TryGet as u32, |_| Ok(())) }

            /// The number of items (Python: `q.qsize()`).
            ///
            /// # Errors
            /// Connection errors.
            pub fn len(&self) -> usize = |h| { h.call(QueueMethod::Len as u32, |_| Ok(())) }

            /// Whether the queue is empty (Python: `q.empty()`).
            ///
            /// # Errors
            /// Connection errors.
            pub fn is_empty(&self) -> bool = |h| { h.call(QueueMethod::IsEmpty as u32, |_| Ok(())) }

            /// Whether a bounded queue is full (Python: `q.full()`).
            ///
            /// # Errors
            /// Connection errors.
            pub fn is_full(&self) -> bool = |h| { h.call(QueueMethod::IsFull as u32, |_| Ok(())) }
        }
    };
}

/// Proxy to a FIFO queue (Python's `queue.Queue` through a manager), from
/// [`Client::queue`].
///
/// ```
/// use std::time::Duration;
/// # fn main() -> manager::Result<()> {
/// let mgr = manager::Manager::builder().spawn_thread()?;
/// let q = mgr.queue::<u32>(2)?;
/// q.put(1)?;
/// assert!(q.try_put(2)?);
/// assert!(q.is_full()?);
/// assert!(!q.put_timeout(3, Duration::from_millis(10))?); // full: 3 is dropped
/// assert_eq!(q.get()?, 1);
/// assert_eq!(q.try_get()?, Some(2));
/// assert_eq!(q.get_timeout(Duration::from_millis(10))?, None);
/// # Ok(()) }
/// ```
pub struct QueueProxy<T> {
    handle: Handle,
    _marker: PhantomData<fn() -> T>,
}

builtin_proxy!(QueueProxy<T>, QueueObject);

async_twin!(
    /// The async face of [`QueueProxy`] (DESIGN §2a): the same methods, each
    /// an `async fn` returning the same result; the same object as a
    /// `QueueProxy` converted with `into()`, both ways.
    AsyncQueueProxy<T> of QueueProxy, QueueObject
);

queue_methods!(QueueProxy / AsyncQueueProxy);

/// Proxy to a joinable queue (Python's `multiprocessing.JoinableQueue`),
/// from [`Client::joinable_queue`]: a queue whose consumers mark each item
/// done, so a producer can wait for all of them.
///
/// Items a consumer took and did not mark done go back to the front of the
/// queue if its connection ends abnormally (its process crashed or was
/// killed): delivery is at-least-once, nothing is lost, and `join` returns.
/// After a normal end they stay unfinished, as in Python.
///
/// ```
/// # fn main() -> manager::Result<()> {
/// let mgr = manager::Manager::builder().spawn_thread()?;
/// let jobs = mgr.joinable_queue::<String>(0)?;
/// jobs.put("a".into())?;
/// let job = jobs.get()?;
/// jobs.task_done()?;
/// jobs.join()?; // every item put has been marked done
/// assert_eq!(jobs.unfinished()?, 0);
/// assert!(jobs.join_timeout(std::time::Duration::from_millis(10))?);
/// assert!(matches!(jobs.task_done(), Err(manager::Error::TaskDoneTooOften)));
/// # let _ = job; Ok(()) }
/// ```
pub struct JoinableQueueProxy<T> {
    handle: Handle,
    _marker: PhantomData<fn() -> T>,
}

builtin_proxy!(JoinableQueueProxy<T>, JoinableQueueObject);

async_twin!(
    /// The async face of [`JoinableQueueProxy`] (DESIGN §2a): the same methods, each
    /// an `async fn` returning the same result; the same object as a
    /// `JoinableQueueProxy` converted with `into()`, both ways.
    AsyncJoinableQueueProxy<T> of JoinableQueueProxy, JoinableQueueObject
);

queue_methods!(JoinableQueueProxy / AsyncJoinableQueueProxy);

proxy_methods! {
    more impl[T: Serialize + DeserializeOwned] JoinableQueueProxy<T> / AsyncJoinableQueueProxy;

    /// Marks one item taken with `get` as done (Python: `q.task_done()`).
    ///
    /// # Errors
    /// `Error::TaskDoneTooOften` if called more times than items were put.
    pub fn task_done(&self) -> () = |h| { h.call(QueueMethod::TaskDone as u32, |_| Ok(())) }

    /// Waits until every item put has been marked done (Python: `q.join()`).
    ///
    /// # Errors
    /// Connection errors.
    pub [wait] fn join(&self) -> () = |h| { h.call(QueueMethod::Join as u32, |_| Ok(())) }

    /// Waits at most `timeout` until every item put has been marked done;
    /// whether they were.
    ///
    /// # Errors
    /// Connection errors.
    pub [wait] fn join_timeout(&self, timeout: Duration) -> bool = |h| {
        h.call(QueueMethod::JoinTimeout as u32, |a| a.put(&timeout))
    }

    /// How many items were put and not yet marked done (Python keeps this
    /// count private, as `unfinished_tasks`).
    ///
    /// # Errors
    /// Connection errors.
    pub fn unfinished(&self) -> u64 = |h| { h.call(QueueMethod::Unfinished as u32, |_| Ok(())) }
}

impl Client {
    /// A new FIFO queue holding at most `maxsize` items, 0 for no bound
    /// (Python: `manager.Queue(maxsize)`).
    ///
    /// ```
    /// # fn main() -> manager::Result<()> {
    /// let mgr = manager::Manager::builder().spawn_thread()?;
    /// let q = mgr.queue::<(u32, String)>(0)?;
    /// q.put((1, "one".into()))?;
    /// assert_eq!(q.len()?, 1);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// Connection errors.
    pub fn queue<T: Serialize + DeserializeOwned + Send + Sync + 'static>(
        &self,
        maxsize: usize,
    ) -> Result<QueueProxy<T>> {
        create::<QueueProxy<T>>(self, |a| a.put(&(maxsize as u64)))
    }

    /// A new joinable queue holding at most `maxsize` items, 0 for no bound
    /// (Python: `manager.JoinableQueue(maxsize)`).
    ///
    /// ```
    /// # fn main() -> manager::Result<()> {
    /// let mgr = manager::Manager::builder().spawn_thread()?;
    /// let q = mgr.joinable_queue::<u8>(10)?;
    /// q.join()?; // nothing put yet
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// Connection errors.
    pub fn joinable_queue<T: Serialize + DeserializeOwned + Send + Sync + 'static>(
        &self,
        maxsize: usize,
    ) -> Result<JoinableQueueProxy<T>> {
        create::<JoinableQueueProxy<T>>(self, |a| a.put(&(maxsize as u64)))
    }
}

impl Client {
    /// [`Client::queue`] through the async face (DESIGN §2a).
    ///
    /// ```
    /// # fn main() -> manager::Result<()> {
    /// let mgr = manager::Manager::builder().spawn_thread()?;
    /// let (address, key) = (mgr.address().clone(), mgr.auth_key().clone());
    /// futures::executor::block_on(async {
    ///     let client = manager::Client::connect_async(&address, &key).await?;
    ///     let q = client.queue_async::<String>(0).await?;
    ///     q.put("job".into()).await?;
    ///     assert_eq!(q.get().await?, "job");
    ///     Ok(())
    /// })
    /// # }
    /// ```
    ///
    /// # Errors
    /// Connection errors.
    pub async fn queue_async<T: Serialize + DeserializeOwned + Send + Sync + 'static>(
        &self,
        maxsize: usize,
    ) -> Result<AsyncQueueProxy<T>> {
        create_async::<AsyncQueueProxy<T>>(self, |a| a.put(&(maxsize as u64))).await
    }

    /// [`Client::joinable_queue`] through the async face (DESIGN §2a).
    ///
    /// # Errors
    /// Connection errors.
    pub async fn joinable_queue_async<T: Serialize + DeserializeOwned + Send + Sync + 'static>(
        &self,
        maxsize: usize,
    ) -> Result<AsyncJoinableQueueProxy<T>> {
        create_async::<AsyncJoinableQueueProxy<T>>(self, |a| a.put(&(maxsize as u64))).await
    }
}
