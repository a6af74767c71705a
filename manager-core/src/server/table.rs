//! The object table and its reference counts.
//!
//! An object lives while anything refers to it: a client session (one count
//! per proxy materialized in that session), a published name, or a token in
//! hand-off. All counts change under one lock, and an object leaves the table
//! in the same critical section in which its count reaches zero, so no one can
//! take a reference to an object that is being freed.

use std::collections::{BTreeMap, HashMap, HashSet};

use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::shared::{End, Object};
use crate::sync::lock;

/// What a proxy expects of the object it names: the type's full path, the
/// element types of a built-in container, and the fingerprint they make.
#[derive(Debug, Deserialize)]
pub(crate) struct Expected {
    type_name: String,
    elements: Vec<String>,
    fingerprint: u64,
}

pub(crate) struct Table {
    objects: RwLock<FxHashMap<u64, Arc<dyn Object>>>,
    /// The objects of `objects` that track connections (locks, semaphores,
    /// queues...): the only ones a closing connection visits.
    trackers: RwLock<FxHashMap<u64, Arc<dyn Object>>>,
    refs: Mutex<Refs>,
    /// The trackers each in-process connection called (a remote
    /// connection keeps its own list): see [`Table::disconnected`].
    touched: Mutex<HashMap<u64, HashSet<u64>>>,
    next_object: AtomicU64,
    /// Counts objects that left `objects`: a [`Recent`] found before the
    /// count changed may name an object that is gone.
    removals: AtomicU64,
}

/// The object a round of one connection's requests called last, kept for
/// the round: a pipeline of calls on one object looks it up once, without
/// the table's lock and the reference count's atomics per call.
///
/// It is used only while no object has left the table since it was found
/// ([`Table::removals`]), so a removed object is never called through it;
/// and it lives only as long as the round (a local of the request loop),
/// so it keeps an object alive past its removal by the rest of that round
/// at most.
#[derive(Default)]
pub(crate) struct Recent(Option<(u64, u64, Arc<dyn Object>)>);

#[derive(Default)]
struct Refs {
    /// Total references per live object; an object is live iff it is here.
    counts: FxHashMap<u64, u64>,
    sessions: FxHashMap<u64, Session>,
    names: HashMap<String, u64>,
    handoffs: HashMap<u64, Handoff>,
}

#[derive(Default)]
struct Session {
    connections: u64,
    refs: FxHashMap<u64, u64>,
    /// The client said goodbye for the whole session: its connections that
    /// close from now on end normally.
    leaving: bool,
}

struct Handoff {
    object: u64,
    deadline: Instant,
}

impl Table {
    /// A table whose first object gets id `first_id`. Managers start at a
    /// random point, so that a proxy kept across a restart at the same
    /// address cannot reach a new object that happens to reuse its id.
    pub(crate) fn new(first_id: u64) -> Table {
        Table {
            objects: RwLock::new(FxHashMap::default()),
            trackers: RwLock::new(FxHashMap::default()),
            refs: Mutex::new(Refs::default()),
            touched: Mutex::new(HashMap::new()),
            next_object: AtomicU64::new(first_id.max(1)),
            removals: AtomicU64::new(0),
        }
    }

    /// The object `id`, for a call.
    #[inline]
    fn get(&self, id: u64) -> Result<Arc<dyn Object>> {
        self.objects
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()
            .ok_or_else(|| no_such_object(id))
    }

    /// The object `id`, for a call, from `recent` if it holds it still.
    #[inline]
    pub(crate) fn get_recent<'r>(
        &self,
        id: u64,
        recent: &'r mut Recent,
    ) -> Result<&'r Arc<dyn Object>> {
        // Read before the lookup: a removal after it changes the count,
        // and the next call looks again.
        let removals = self.removals.load(Ordering::Acquire);
        let fresh = !matches!(&recent.0, Some((r, n, _)) if *r == id && *n == removals);
        if fresh {
            recent.0 = Some((id, removals, self.get(id)?));
        }
        match &recent.0 {
            Some((_, _, object)) => Ok(object),
            None => Err(no_such_object(id)),
        }
    }

    /// Adds a new object with one reference held by `session`.
    pub(crate) fn insert(
        &self,
        session: u64,
        object: Box<dyn Object>,
        limit: usize,
    ) -> Result<u64> {
        let id = self.next_object.fetch_add(1, Ordering::Relaxed);
        let mut refs = lock(&self.refs);
        let s = refs
            .sessions
            .get_mut(&session)
            .ok_or_else(|| Error::Protocol("the calling session has ended".into()))?;
        if s.refs.len() >= limit {
            return Err(Error::LimitReached(format!(
                "a client session may hold at most {limit} objects"
            )));
        }
        *s.refs.entry(id).or_insert(0) += 1;
        refs.counts.insert(id, 1);
        tracing::debug!(
            object = id,
            type_name = object.type_name(),
            "object created"
        );
        let object: Arc<dyn Object> = Arc::from(object);
        if object.tracks_connections() {
            write(&self.trackers).insert(id, Arc::clone(&object));
        }
        write(&self.objects).insert(id, object);
        Ok(id)
    }

    /// Adds a reference held by `session` to a live object whose interface
    /// must be the `expected` one.
    pub(crate) fn add_session_ref(&self, session: u64, id: u64, expected: &Expected) -> Result<()> {
        let mut refs = lock(&self.refs);
        self.check(&refs, id, expected)?;
        let s = refs
            .sessions
            .get_mut(&session)
            .ok_or_else(|| Error::Protocol("the calling session has ended".into()))?;
        *s.refs.entry(id).or_insert(0) += 1;
        *refs.counts.entry(id).or_insert(0) += 1;
        Ok(())
    }

    /// Adds a reference held by `session` to a live object of any interface
    /// and returns its fingerprint: for objects named by a message's
    /// capability list, whose proxies check the fingerprint themselves.
    pub(crate) fn add_session_ref_any(&self, session: u64, id: u64) -> Result<u64> {
        let mut refs = lock(&self.refs);
        if !refs.counts.contains_key(&id) {
            return Err(no_such_object(id));
        }
        let fingerprint = self
            .objects
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .map(|o| o.fingerprint())
            .ok_or_else(|| no_such_object(id))?;
        let s = refs
            .sessions
            .get_mut(&session)
            .ok_or_else(|| Error::Protocol("the calling session has ended".into()))?;
        *s.refs.entry(id).or_insert(0) += 1;
        *refs.counts.entry(id).or_insert(0) += 1;
        Ok(fingerprint)
    }

    /// Adds a reference held by stored bytes (a container element) to a
    /// live object; false if it is gone.
    pub(crate) fn retain(&self, id: u64) -> bool {
        let mut refs = lock(&self.refs);
        match refs.counts.get_mut(&id) {
            Some(n) => {
                *n += 1;
                true
            }
            None => false,
        }
    }

    /// Drops a reference taken with [`Table::retain`].
    pub(crate) fn unretain(&self, id: u64) {
        let freed = {
            let mut refs = lock(&self.refs);
            self.decrement(&mut refs, id, 1)
        };
        drop(freed);
    }

    /// Checks that live object `id` has the `expected` interface.
    pub(crate) fn check_interface(&self, id: u64, expected: &Expected) -> Result<()> {
        self.check(&lock(&self.refs), id, expected)
    }

    fn check(&self, refs: &Refs, id: u64, expected: &Expected) -> Result<()> {
        if !refs.counts.contains_key(&id) {
            return Err(no_such_object(id));
        }
        let objects = self.objects.read().unwrap_or_else(PoisonError::into_inner);
        let obj = objects.get(&id).ok_or_else(|| no_such_object(id))?;
        if obj.fingerprint() != expected.fingerprint {
            return Err(mismatch(id, &**obj, expected));
        }
        Ok(())
    }

    /// Drops one reference `session` holds on `id`. Unknown pairs are ignored:
    /// a release can race with the end of its session.
    pub(crate) fn release(&self, session: u64, id: u64) {
        let freed = {
            let mut refs = lock(&self.refs);
            let Some(s) = refs.sessions.get_mut(&session) else {
                return;
            };
            let Some(n) = s.refs.get_mut(&id) else {
                return;
            };
            *n -= 1;
            if *n == 0 {
                s.refs.remove(&id);
            }
            self.decrement(&mut refs, id, 1)
        };
        drop(freed);
    }

    /// Takes `n` references off `id`; frees it at zero. Returns the freed
    /// object so that its `Drop` runs after the locks are released.
    fn decrement(&self, refs: &mut Refs, id: u64, n: u64) -> Option<Arc<dyn Object>> {
        let count = refs.counts.get_mut(&id)?;
        *count = count.saturating_sub(n);
        if *count > 0 {
            return None;
        }
        refs.counts.remove(&id);
        let freed = write(&self.objects).remove(&id);
        self.removals.fetch_add(1, Ordering::Release);
        if freed.as_ref().is_some_and(|o| o.tracks_connections()) {
            write(&self.trackers).remove(&id);
        }
        if let Some(o) = &freed {
            tracing::debug!(object = id, type_name = o.type_name(), "object freed");
        }
        freed
    }

    /// A new session with one connection.
    pub(crate) fn open_session(&self) -> u64 {
        let mut refs = lock(&self.refs);
        loop {
            let id = crate::auth::random_u64();
            if id != 0 && !refs.sessions.contains_key(&id) {
                refs.sessions.insert(
                    id,
                    Session {
                        connections: 1,
                        ..Session::default()
                    },
                );
                return id;
            }
        }
    }

    /// Adds a connection to a live session.
    pub(crate) fn join_session(&self, id: u64) -> Result<()> {
        let mut refs = lock(&self.refs);
        let s = refs.sessions.get_mut(&id).ok_or_else(|| {
            Error::ConnectionLost("the client's session has ended on the manager".into())
        })?;
        s.connections += 1;
        Ok(())
    }

    /// The client of session `id` said goodbye for all its connections.
    pub(crate) fn mark_leaving(&self, id: u64) {
        if let Some(s) = lock(&self.refs).sessions.get_mut(&id) {
            s.leaving = true;
        }
    }

    /// Whether the client of session `id` said goodbye for all its connections.
    pub(crate) fn is_leaving(&self, id: u64) -> bool {
        lock(&self.refs)
            .sessions
            .get(&id)
            .is_some_and(|s| s.leaving)
    }

    /// A connection of `id` closed; the last one ends the session and drops
    /// every reference it held.
    pub(crate) fn leave_session(&self, id: u64) {
        let freed: Vec<_> = {
            let mut refs = lock(&self.refs);
            let Some(s) = refs.sessions.get_mut(&id) else {
                return;
            };
            s.connections = s.connections.saturating_sub(1);
            if s.connections > 0 {
                return;
            }
            let Some(s) = refs.sessions.remove(&id) else {
                return;
            };
            s.refs
                .into_iter()
                .filter_map(|(obj, n)| self.decrement(&mut refs, obj, n))
                .collect()
        };
        drop(freed);
    }

    /// Names `id` as `name`, replacing what had that name.
    pub(crate) fn publish(&self, name: &str, id: u64) -> Result<()> {
        let freed = {
            let mut refs = lock(&self.refs);
            if !refs.counts.contains_key(&id) {
                return Err(no_such_object(id));
            }
            *refs.counts.entry(id).or_insert(0) += 1;
            tracing::debug!(name, object = id, "name published");
            let old = refs.names.insert(name.to_owned(), id);
            old.and_then(|old| self.decrement(&mut refs, old, 1))
        };
        drop(freed);
        Ok(())
    }

    /// The object named `name`, with a new reference for `session`.
    pub(crate) fn lookup(&self, session: u64, name: &str, expected: &Expected) -> Result<u64> {
        let id = {
            let refs = lock(&self.refs);
            *refs
                .names
                .get(name)
                .ok_or_else(|| Error::NoSuchName(name.to_owned()))?
        };
        // The name may be replaced in between; then the reference below fails
        // or lands on the new holder's object, which is what a racing lookup may see.
        self.add_session_ref(session, id, expected)?;
        Ok(id)
    }

    pub(crate) fn unpublish(&self, name: &str) -> Result<()> {
        let freed = {
            let mut refs = lock(&self.refs);
            let id = refs
                .names
                .remove(name)
                .ok_or_else(|| Error::NoSuchName(name.to_owned()))?;
            tracing::debug!(name, object = id, "name unpublished");
            self.decrement(&mut refs, id, 1)
        };
        drop(freed);
        Ok(())
    }

    /// Holds `id` for a token in hand-off until it is redeemed or `timeout` passes.
    pub(crate) fn hold(&self, id: u64, timeout: Duration) -> Result<u64> {
        let mut refs = lock(&self.refs);
        if !refs.counts.contains_key(&id) {
            return Err(no_such_object(id));
        }
        let token = loop {
            let t = crate::auth::random_u64();
            if !refs.handoffs.contains_key(&t) {
                break t;
            }
        };
        *refs.counts.entry(id).or_insert(0) += 1;
        refs.handoffs.insert(
            token,
            Handoff {
                object: id,
                deadline: Instant::now() + timeout,
            },
        );
        Ok(token)
    }

    /// Gives `session` a reference to `id`; the hand-off hold, if still
    /// there, is consumed.
    pub(crate) fn redeem(
        &self,
        session: u64,
        id: u64,
        token: Option<u64>,
        expected: &Expected,
    ) -> Result<()> {
        self.add_session_ref(session, id, expected)?;
        if let Some(t) = token {
            let freed = {
                let mut refs = lock(&self.refs);
                match refs.handoffs.get(&t) {
                    Some(h) if h.object == id => {
                        refs.handoffs.remove(&t);
                        self.decrement(&mut refs, id, 1)
                    }
                    _ => None,
                }
            };
            drop(freed);
        }
        Ok(())
    }

    /// Drops hand-off holds whose time is up.
    pub(crate) fn expire(&self, now: Instant) {
        let freed: Vec<_> = {
            let mut refs = lock(&self.refs);
            let expired: Vec<(u64, u64)> = refs
                .handoffs
                .iter()
                .filter(|(_, h)| h.deadline <= now)
                .map(|(t, h)| (*t, h.object))
                .collect();
            expired
                .into_iter()
                .filter_map(|(t, obj)| {
                    refs.handoffs.remove(&t);
                    self.decrement(&mut refs, obj, 1)
                })
                .collect()
        };
        drop(freed);
    }

    pub(crate) fn object_count(&self) -> u64 {
        self.objects
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len() as u64
    }

    pub(crate) fn objects_by_type(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for o in self
            .objects
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            *out.entry(o.type_name().to_owned()).or_insert(0) += 1;
        }
        out
    }

    pub(crate) fn counts(&self) -> (u64, u64) {
        let refs = lock(&self.refs);
        (refs.sessions.len() as u64, refs.names.len() as u64)
    }

    /// Notes that in-process connection `conn` called `object`, which
    /// tracks connections.
    pub(crate) fn touch(&self, conn: u64, object: u64) {
        lock(&self.touched).entry(conn).or_default().insert(object);
    }

    /// Tells the objects that track connections and that connection `conn`
    /// called (`touched`, and those noted by [`Table::touch`]) that it
    /// ended, and how. No other object is visited, so a connection's end
    /// costs what it used, however many objects live.
    pub(crate) fn disconnected(&self, conn: u64, end: End, touched: impl IntoIterator<Item = u64>) {
        let mut ids: Vec<u64> = touched.into_iter().collect();
        if let Some(more) = lock(&self.touched).remove(&conn) {
            ids.extend(more);
        }
        if ids.is_empty() {
            return;
        }
        let objects: Vec<_> = {
            let trackers = self.trackers.read().unwrap_or_else(PoisonError::into_inner);
            ids.iter()
                .filter_map(|id| trackers.get(id).cloned())
                .collect()
        };
        for o in objects {
            o.disconnected(conn, end);
        }
    }

    /// Frees everything (at shutdown), outside the locks.
    pub(crate) fn clear(&self) {
        let objects = std::mem::take(&mut *write(&self.objects));
        self.removals.fetch_add(1, Ordering::Release);
        write(&self.trackers).clear();
        lock(&self.touched).clear();
        *lock(&self.refs) = Refs::default();
        drop(objects);
    }
}

/// Why object `id` cannot be used through a proxy that expects `expected`:
/// another type, the same container of other element types, or the same
/// type built from another definition (the only case a rebuild fixes).
fn mismatch(id: u64, obj: &dyn Object, expected: &Expected) -> Error {
    let is = describe(obj.type_name(), obj.element_types());
    let wanted = describe(&expected.type_name, &expected.elements);
    Error::InterfaceMismatch(if obj.type_name() != expected.type_name {
        format!("object {id} is of type {is}, not {wanted}")
    } else if obj.element_types() != expected.elements.as_slice() {
        format!(
            "object {id} is of type {is}, not {wanted}: the proxy was made for another \
             element type"
        )
    } else {
        format!(
            "object {id} of type {is} was built from another interface than the proxy's \
             (fingerprint {:016x}, the proxy expects {:016x}); rebuild both sides from \
             the same definition",
            obj.fingerprint(),
            expected.fingerprint
        )
    })
}

/// `manager::Dict<alloc::string::String, i64>`, or a type's path alone.
fn describe(type_name: &str, elements: &[String]) -> String {
    if elements.is_empty() {
        type_name.to_owned()
    } else {
        format!("{type_name}<{}>", elements.join(", "))
    }
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

fn no_such_object(id: u64) -> Error {
    Error::NoSuchObject(format!(
        "object {id} does not exist (it was freed or never created)"
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use super::{mismatch, Expected, Recent, Table};
    use crate::context::Context;
    use crate::error::{Error, Result};
    use crate::shared::End;
    use crate::shared::Object;
    use crate::wire::codec::{Decoder, Encoder};

    /// An object that only describes itself.
    struct Described(&'static str, Vec<String>, u64);

    impl Object for Described {
        fn type_name(&self) -> &'static str {
            self.0
        }
        fn fingerprint(&self) -> u64 {
            self.2
        }
        fn element_types(&self) -> &[String] {
            &self.1
        }
        fn method_name(&self, _: u32) -> &'static str {
            "m"
        }
        fn call(
            &self,
            _: &Context,
            _: u32,
            _: &mut Decoder<'_>,
            _: &mut Encoder<'_>,
        ) -> Result<()> {
            Ok(())
        }
    }

    /// Counts how often it is told of a closed connection.
    struct Tracking(bool, Arc<AtomicU32>);

    impl Object for Tracking {
        fn type_name(&self) -> &'static str {
            "test::Tracking"
        }
        fn fingerprint(&self) -> u64 {
            0
        }
        fn method_name(&self, _: u32) -> &'static str {
            "m"
        }
        fn call(
            &self,
            _: &Context,
            _: u32,
            _: &mut Decoder<'_>,
            _: &mut Encoder<'_>,
        ) -> Result<()> {
            Ok(())
        }
        fn disconnected(&self, _: u64, _: End) {
            self.1.fetch_add(1, Ordering::Relaxed);
        }
        fn tracks_connections(&self) -> bool {
            self.0
        }
    }

    #[test]
    fn a_recent_object_is_never_found_once_it_left_the_table() {
        let table = Table::new(1);
        let session = table.open_session();
        let make = || Box::new(Described("test::D", Vec::new(), 0)) as Box<dyn Object>;
        let a = table.insert(session, make(), 16).expect("insert a");
        let b = table.insert(session, make(), 16).expect("insert b");
        let mut recent = Recent::default();
        let first = Arc::as_ptr(table.get_recent(a, &mut recent).expect("a")) as *const ();
        let again = Arc::as_ptr(table.get_recent(a, &mut recent).expect("a again")) as *const ();
        assert_eq!(first, again);
        // Another object's removal makes `recent` look again, and find `a`.
        table.release(session, b);
        assert!(table.get_recent(a, &mut recent).is_ok());
        assert!(matches!(
            table.get_recent(b, &mut recent),
            Err(Error::NoSuchObject(_))
        ));
        // `a` itself removed while `recent` holds it: not found through it.
        let _ = table.get_recent(a, &mut recent).expect("a held");
        table.release(session, a);
        assert!(matches!(
            table.get_recent(a, &mut recent),
            Err(Error::NoSuchObject(_))
        ));
    }

    #[test]
    fn a_closed_connection_visits_only_the_trackers_it_called() {
        let table = Table::new(1);
        let session = table.open_session();
        let (ids, counts): (Vec<_>, Vec<_>) = [false, true, false, true]
            .into_iter()
            .map(|tracks| {
                let count = Arc::new(AtomicU32::new(0));
                let object = Box::new(Tracking(tracks, Arc::clone(&count)));
                (table.insert(session, object, 16).unwrap(), count)
            })
            .unzip();
        let visits = || -> Vec<u32> { counts.iter().map(|c| c.load(Ordering::Relaxed)).collect() };
        // Called the first two: only the tracker among them hears of it.
        table.disconnected(9, End::Abnormal, [ids[0], ids[1]]);
        assert_eq!(visits(), [0, 1, 0, 0]);
        // An in-process connection's calls are noted by the table.
        table.touch(10, ids[3]);
        table.disconnected(10, End::Normal, []);
        assert_eq!(visits(), [0, 1, 0, 1]);
        table.disconnected(10, End::Normal, []);
        assert_eq!(visits(), [0, 1, 0, 1], "noted once, told once");
        // Freed, a tracker is visited no more.
        table.leave_session(session);
        table.disconnected(9, End::Abnormal, [ids[1]]);
        assert_eq!(visits(), [0, 1, 0, 1]);
    }

    fn why(obj: &Described, type_name: &str, elements: &[&str], fingerprint: u64) -> String {
        let expected = Expected {
            type_name: type_name.into(),
            elements: elements.iter().map(|e| (*e).to_owned()).collect(),
            fingerprint,
        };
        match mismatch(7, obj, &expected) {
            Error::InterfaceMismatch(m) => m,
            e => panic!("not a mismatch: {e}"),
        }
    }

    #[test]
    fn a_mismatch_says_which_kind_it_is() {
        let queue = Described("manager::Queue", vec!["i32".into()], 1);
        assert_eq!(
            why(&queue, "app::Inventory", &[], 2),
            "object 7 is of type manager::Queue<i32>, not app::Inventory"
        );
        assert_eq!(
            why(&queue, "manager::Queue", &["u32"], 2),
            "object 7 is of type manager::Queue<i32>, not manager::Queue<u32>: the proxy \
             was made for another element type"
        );
        // Only the same type from another definition calls for a rebuild.
        let skewed = why(
            &Described("app::Counter", vec![], 1),
            "app::Counter",
            &[],
            2,
        );
        assert!(
            skewed.starts_with("object 7 of type app::Counter was built from another interface"),
            "{skewed}"
        );
        assert!(
            skewed.ends_with("rebuild both sides from the same definition"),
            "{skewed}"
        );
    }
}
