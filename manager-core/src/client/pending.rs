//! The reply of a pipelined call, not yet taken.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;

use crate::client::{Client, Method};
use crate::error::{Error, Result};

/// A call sent with `proxy.deferred().method(..)` whose reply has not been taken.
///
/// Calls sent from one thread run in the manager in the order sent, so many
/// deferred calls cost about one round trip: they are written together
/// when the thread first waits for a reply, makes a plain call, drops a
/// `Pending`, or has 64 KiB of them buffered, and the manager answers a
/// pipeline with as few writes. Replies may be taken in any order.
/// Dropping a `Pending` discards its reply (the call still runs).
/// A `Pending` belongs to the thread that sent the call.
///
/// ```
/// # use manager::{shared, Manager};
/// # #[shared] pub struct Tally { n: u64 }
/// # #[shared] impl Tally { pub fn new() -> Self { Tally { n: 0 } } pub fn add(&mut self, k: u64) -> u64 { self.n += k; self.n } }
/// # fn main() -> manager::Result<()> {
/// let mgr = Manager::builder().register::<Tally>().spawn_thread()?;
/// let t = TallyProxy::new(&mgr)?;
/// let pending: Vec<_> = (0..100).map(|_| t.deferred().add(1)).collect::<Result<_, _>>()?;
/// let last = pending.into_iter().map(|p| p.wait()).last().unwrap()?;
/// assert_eq!(last, 100);
/// # Ok(()) }
/// ```
#[must_use = "a Pending does nothing unless waited for; dropping it discards the reply"]
pub struct Pending<R> {
    state: State,
    _marker: PhantomData<fn() -> R>,
    /// Not `Send`: the reply arrives on the sending thread's connection.
    _not_send: PhantomData<*const ()>,
}

enum State {
    /// Sent on link `link` of the sending thread as call `seq` of `method`.
    Sent {
        client: Client,
        link: u64,
        seq: u64,
        method: Method,
    },
    /// Already run (in the manager's own process): the encoded result and
    /// the references its proxies will adopt.
    Ready(Client, Result<crate::caps::Reply>, Method),
    /// Waited for.
    Done,
}

impl<R: DeserializeOwned> Pending<R> {
    pub(crate) fn sent(client: Client, link: u64, seq: u64, method: Method) -> Self {
        Pending {
            state: State::Sent {
                client,
                link,
                seq,
                method,
            },
            _marker: PhantomData,
            _not_send: PhantomData,
        }
    }

    pub(crate) fn ready(
        client: Client,
        result: Result<crate::caps::Reply>,
        method: Method,
    ) -> Self {
        Pending {
            state: State::Ready(client, result, method),
            _marker: PhantomData,
            _not_send: PhantomData,
        }
    }

    /// Waits for the reply and returns the call's result.
    ///
    /// # Errors
    /// Whatever the call returned, or `Error::ConnectionLost`.
    pub fn wait(mut self) -> Result<R> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Sent {
                client,
                link,
                seq,
                method,
            } => client.with_existing_link(link, |l| l.wait(seq, &client, method)),
            State::Ready(client, r, method) => {
                let (bytes, caps, _foreign) = r?;
                client.adopt_local(&bytes, caps, method)
            }
            State::Done => Err(Error::Protocol("this reply was already taken".into())),
        }
    }
}

impl<R> Drop for Pending<R> {
    fn drop(&mut self) {
        match &mut self.state {
            State::Sent {
                client, link, seq, ..
            } => {
                let seq = *seq;
                let _ = client.with_existing_link(*link, |l| {
                    l.discard(seq);
                    Ok(())
                });
            }
            State::Ready(client, Ok((_, Some(caps), _)), _) => {
                for (object, _) in caps.drain(..) {
                    client.release(object);
                }
            }
            _ => {}
        }
    }
}

impl<R> std::fmt::Debug for Pending<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.state {
            State::Sent { seq, .. } => f.debug_struct("Pending").field("seq", seq).finish(),
            State::Ready(..) => f.write_str("Pending(ready)"),
            State::Done => f.write_str("Pending(done)"),
        }
    }
}
