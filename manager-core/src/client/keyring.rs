//! The process-wide keyring: address → key, and the live client for it.
//!
//! A proxy that arrives in this process (from a token, a container or a
//! reply) binds to its manager through the client recorded here. Only a
//! successful handshake adds an entry. Inside a manager of this process,
//! a proxy to a manager of this process calls it directly instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::address::Address;
use crate::auth::AuthKey;
use crate::client::local::InProcess;
use crate::client::{Client, ClientInner};
use crate::error::{Error, Result};
use crate::sync::lock;

struct Entry {
    key: AuthKey,
    client: Weak<ClientInner>,
}

fn ring() -> &'static Mutex<HashMap<Address, Entry>> {
    static RING: OnceLock<Mutex<HashMap<Address, Entry>>> = OnceLock::new();
    RING.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Managers running in this process, by address: a proxy that arrives here
/// for one of them calls it directly, without a socket or a key.
fn local_servers() -> &'static Mutex<HashMap<Address, Weak<dyn InProcess>>> {
    static LOCAL: OnceLock<Mutex<HashMap<Address, Weak<dyn InProcess>>>> = OnceLock::new();
    LOCAL.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Records a manager of this process.
pub(crate) fn register_local(state: &Arc<dyn InProcess>) {
    let mut servers = lock(local_servers());
    servers.retain(|_, s| s.strong_count() > 0);
    servers.insert(state.address().clone(), Arc::downgrade(state));
}

/// The in-process client of a live manager of this process at `address`,
/// for code running inside a manager of this process (its methods, its
/// containers keeping elements): that code calls the other in-process
/// managers directly. Other threads of the process are clients like those
/// of any other process: their proxies bind through the keyring, so that
/// they call through the same connection (the same lock owner, the same
/// session) as the thread's other proxies to that manager.
fn local_client(address: &Address, key: Option<&AuthKey>) -> Option<Client> {
    if !crate::caps::serving() {
        return None;
    }
    let state = local_state(address)?;
    if key.is_some_and(|k| k != state.key()) {
        return None;
    }
    state.internal_client().ok()
}

fn local_state(address: &Address) -> Option<Arc<dyn InProcess>> {
    lock(local_servers()).get(address)?.upgrade()
}

/// Records a freshly authenticated client.
pub(crate) fn remember(client: &Client) {
    let mut ring = lock(ring());
    let keep_live = ring
        .get(client.address())
        .is_some_and(|e| e.key == *client.key() && e.client.strong_count() > 0);
    if !keep_live {
        ring.insert(
            client.address().clone(),
            Entry {
                key: client.key().clone(),
                client: Arc::downgrade(&client.inner),
            },
        );
    }
}

/// A client of the manager at `address`, with the key this process holds for it.
pub(crate) fn client_for(address: &Address) -> Result<Client> {
    if let Some(c) = local_client(address, None) {
        return Ok(c);
    }
    let known = {
        let ring = lock(ring());
        match ring.get(address) {
            Some(entry) => match entry.client.upgrade() {
                Some(inner) => return Ok(Client { inner }),
                None => Some(entry.key.clone()),
            },
            None => None,
        }
    };
    // A manager running in this process knows its own key, whether or not
    // a client of it was ever made here.
    let key = known
        .or_else(|| local_state(address).map(|s| s.key().clone()))
        .ok_or_else(|| {
            Error::AuthenticationFailed(format!(
                "this process holds no key for the manager at {address}; connect a Client \
                 to it or redeem a token with its key first"
            ))
        })?;
    Client::connect(address, &key)
}

/// A client of the manager at `address` proving `key`: the live one if it
/// uses the same key, else a new connection.
pub(crate) fn client_with(address: &Address, key: &AuthKey) -> Result<Client> {
    if let Some(c) = local_client(address, Some(key)) {
        return Ok(c);
    }
    {
        let ring = lock(ring());
        if let Some(e) = ring.get(address) {
            if e.key == *key {
                if let Some(inner) = e.client.upgrade() {
                    return Ok(Client { inner });
                }
            }
        }
    }
    Client::connect(address, key)
}

/// Every (address, key) this process has verified, for a manager process it
/// starts: so that manager can hold proxies to the same managers.
pub(crate) fn snapshot() -> Vec<(Address, AuthKey)> {
    lock(ring())
        .iter()
        .map(|(a, e)| (a.clone(), e.key.clone()))
        .collect()
}

/// Records keys verified by the process that started this one.
pub(crate) fn preload(entries: Vec<(Address, AuthKey)>) {
    let mut ring = lock(ring());
    for (address, key) in entries {
        ring.entry(address).or_insert(Entry {
            key,
            client: Weak::new(),
        });
    }
}
