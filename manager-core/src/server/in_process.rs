//! The door through which clients of this process call a manager of this
//! process directly ([`InProcess`], which the client defines).

use std::sync::atomic::Ordering;

use crate::address::Address;
use crate::auth::AuthKey;
use crate::caps::ReplyCaps;
use crate::client::{Client, InProcess};
use crate::context::{Caller, Context};
use crate::error::{Error, Result};
use crate::proxy::Handle;
use crate::server::{Invocation, Recent, ServerState};
use crate::shared::End;
use crate::wire::codec::{Decoder, Encoder};

impl InProcess for ServerState {
    fn address(&self) -> &Address {
        &self.address
    }

    fn key(&self) -> &AuthKey {
        &self.config.key
    }

    fn is_stopping(&self) -> bool {
        ServerState::is_stopping(self)
    }

    fn open_session(&self) -> u64 {
        self.table.open_session()
    }

    fn leave_session(&self, session: u64) {
        self.table.leave_session(session);
    }

    fn release(&self, session: u64, object: u64) {
        self.table.release(session, object);
    }

    fn new_connection_id(&self) -> u64 {
        ServerState::new_connection_id(self)
    }

    fn connection_ended(&self, conn: u64, end: End) {
        // In-process connections note what they touch in the table.
        self.table.disconnected(conn, end, []);
    }

    fn internal_client(&self) -> Result<Client> {
        ServerState::internal_client(self)
    }

    fn call(
        &self,
        conn: u64,
        session: u64,
        object: u64,
        method: u32,
        args: &[u8],
        arg_caps: Option<&[u64]>,
        out: &mut Vec<u8>,
    ) -> Result<(ReplyCaps, Vec<Handle>)> {
        let ctx = Context {
            conn,
            server: self.me.upgrade().ok_or(Error::ServerShutdown)?,
            session,
            undo: Default::default(),
            caller: Caller::Local,
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        let call = Invocation {
            object,
            method,
            args: Decoder::new(args),
            arg_caps,
        };
        ServerState::call(
            self,
            &ctx,
            call,
            &mut Encoder::new(out),
            &mut Recent::default(),
        )
    }
}
