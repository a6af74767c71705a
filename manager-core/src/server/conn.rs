//! One connection: the handshake, then calls in order until the peer leaves.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::{Handshake, Keys};
use crate::context::{Caller, Context};
use crate::error::{Error, Result};
use crate::server::{control, ServerState};
use crate::shared::End;
use crate::transport::Socket;
use crate::wire::codec::{from_slice, to_vec, Decoder};
use crate::wire::frame::{
    read_error, receive, send, Blob, FrameReader, FrameWriter, ReadFresh, HANDSHAKE_MAX_FRAME,
};
use crate::wire::message::{
    split_caps, Answer, Hello, Join, Request, Response, Welcome, CONTROL, MAGIC, PROTOCOL_VERSION,
};
use serde_bytes::ByteBuf;

pub(super) fn serve(state: Arc<ServerState>, socket: Socket, conn: u64) {
    let peer = socket.peer();
    let span = tracing::debug_span!("connection", id = conn, %peer);
    let _enter = span.enter();
    let mut reader = FrameReader::new(HANDSHAKE_MAX_FRAME);
    let mut writer = FrameWriter::new();
    let shaken = {
        let _span = tracing::debug_span!("handshake").entered();
        handshake(&state, &socket, &mut reader, &mut writer, conn)
    };
    state.handshake_done();
    let (session, socket) = match shaken {
        Ok((session, Some(keys))) => (session, socket.seal(keys)),
        Ok((session, None)) => (session, socket),
        Err(e) => {
            match &e {
                Error::AuthenticationFailed(_) => {
                    tracing::warn!(%peer, "authentication failed: the peer does not know the key")
                }
                _ => tracing::debug!(%peer, error = %e, "handshake failed"),
            }
            socket.shutdown();
            return;
        }
    };
    if !state.register(conn, session, &socket) {
        state.table.leave_session(session);
        socket.shutdown();
        return;
    }
    tracing::debug!(session = format_args!("{session:016x}"), "connection open");
    reader.set_max(state.config.limits.max_frame);
    reader.allow_blobs();
    let ctx = Context {
        server: Arc::clone(&state),
        session,
        conn,
        undo: Default::default(),
        caller: Caller::remote(&socket),
    };
    let ended = calls(&state, &ctx, &socket, &socket, &mut reader, &mut writer);
    let _ = ctx.flush_replies();
    let end = match &ended {
        Ok(Ended::Goodbye { session: all }) => {
            if *all {
                // The client's other connections said goodbye just before
                // this one (or are about to close with its process): settle
                // them first, so the farewell below means the whole session.
                state.table.mark_leaving(session);
                state.await_session(session, conn, SESSION_FAREWELL);
            }
            End::Normal
        }
        Ok(Ended::Shutdown) => End::Normal,
        // Without a goodbye, unless the client said one for the session.
        _ if state.table.is_leaving(session) => End::Normal,
        Ok(Ended::Closed) => End::Abnormal,
        Err(e) => {
            tracing::debug!(error = %e, "connection closed with an error");
            if let Error::Protocol(_) = e {
                // Tell the peer why before hanging up; it may not be listening.
                let _ = writer.begin().put(&e.to_wire());
                let _ = writer.send(
                    &mut &socket,
                    &Response::Fatal,
                    state.config.limits.max_frame,
                );
            }
            End::Abnormal
        }
    };
    tracing::debug!(?end, "connection ending");
    state.table.disconnected(conn, end);
    state.table.leave_session(session);
    if let Ok(Ended::Goodbye { .. }) = ended {
        // Everything the connection held is settled: say so, then close.
        writer.begin();
        let _ = writer.send(
            &mut &socket,
            &Response::Farewell,
            state.config.limits.max_frame,
        );
    }
    socket.shutdown();
    state.unregister(conn);
    tracing::debug!("connection closed");
}

/// How long a session's goodbye waits for its other connections to end.
const SESSION_FAREWELL: Duration = Duration::from_secs(2);

/// How a connection's call loop ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// The peer closed the stream without a goodbye.
    Closed,
    /// The peer said goodbye (for all its session's connections with `session`).
    Goodbye { session: bool },
    /// The peer asked the manager to shut down.
    Shutdown,
}

/// The call loop, over any byte streams (a socket, or a fuzzer's bytes).
/// Returns how the peer ended it, or the error that ended it.
pub(crate) fn calls(
    state: &ServerState,
    ctx: &Context,
    mut input: impl ReadFresh,
    mut output: impl Write,
    reader: &mut FrameReader,
    writer: &mut FrameWriter,
) -> Result<Ended> {
    let max = state.config.limits.max_frame;
    loop {
        let (body, blob) = match reader.next_with_blob(&mut input) {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(Ended::Closed),
            Err(e) => return Err(read_error(e)),
        };
        let (request, payload) = postcard::take_from_bytes::<Request>(body)
            .map_err(|e| Error::Protocol(format!("malformed request: {e}")))?;
        let header_len = body.len() - payload.len();
        let (seq, object, method, args, arg_caps) = match request {
            Request::Call {
                seq,
                object,
                method,
            } => (seq, object, method, payload, None),
            Request::CallCaps {
                seq,
                object,
                method,
                caps_len,
            } => {
                let (args, caps) = split_caps(payload, caps_len)?;
                (
                    seq,
                    object,
                    method,
                    args,
                    Some(from_slice::<Vec<u64>>(caps)?),
                )
            }
            Request::Release { object } => {
                state.table.release(ctx.session, object);
                continue;
            }
            Request::Goodbye { session } => return Ok(Ended::Goodbye { session }),
        };
        let args = match blob {
            None => Decoder::new(args),
            // The byte string's offset in the arguments, which follow the header.
            Some(Blob { at, bytes }) => match at.checked_sub(header_len) {
                Some(at) if at <= args.len() => Decoder::with_blob(args, at, bytes),
                _ => {
                    return Err(Error::protocol(
                        "a byte string out of line outside the arguments",
                    ))
                }
            },
        };
        {
            {
                state.calls.fetch_add(1, Ordering::Relaxed);
                let result = state
                    .call(
                        ctx,
                        object,
                        method,
                        args,
                        arg_caps.as_deref(),
                        &mut writer.begin(),
                    )
                    .and_then(|(caps, foreign)| {
                        // The peer binds these while decoding the reply; no
                        // message says when it has, so they are kept for the
                        // hand-off time.
                        state.keep_for_handoff(foreign);
                        let Some(caps) = caps else {
                            return writer.finish(&Response::Ok { seq }, max);
                        };
                        let mut p = writer.payload();
                        let before = p.len();
                        p.put(&caps)?;
                        let caps_len = (p.len() - before) as u32;
                        writer.finish(&Response::OkCaps { seq, caps_len }, max)
                    });
                if let Err(e) = result {
                    writer.begin().put(&e.to_wire())?;
                    writer.finish(&Response::Err { seq }, max)?;
                }
                let shutdown = object == CONTROL && method == control::method::SHUTDOWN;
                if let Some(put_back) = ctx.take_undo() {
                    // The reply carries an item out of a container: it goes
                    // now, and the item goes back if its caller is gone.
                    let sent = if ctx.peer_gone() {
                        Err(Error::ConnectionLost(
                            "the caller left before its reply".into(),
                        ))
                    } else {
                        ctx.reply(writer.frame(), false, &mut output)
                    };
                    if let Err(e) = sent {
                        put_back();
                        return Err(e);
                    }
                    continue;
                }
                ctx.reply(writer.frame(), reader.has_frame() && !shutdown, &mut output)?;
                if shutdown {
                    state.stop();
                    return Ok(Ended::Shutdown);
                }
            }
        }
    }
}

/// Runs the handshake: returns the session the connection joined, and the
/// keys if what follows is encrypted.
fn handshake(
    state: &ServerState,
    socket: &Socket,
    reader: &mut FrameReader,
    writer: &mut FrameWriter,
    conn: u64,
) -> Result<(u64, Option<Keys>)> {
    let deadline = Some(state.config.limits.handshake_timeout);
    socket.set_read_timeout(deadline)?;
    socket.set_write_timeout(deadline)?;
    let hello: Hello = receive(reader, socket)?;
    if hello.magic != MAGIC || hello.version != PROTOCOL_VERSION {
        let e = Error::Protocol(format!(
            "the manager speaks protocol version {PROTOCOL_VERSION}; the client sent another \
             protocol or version {}",
            hello.version
        ));
        let _ = send(writer, socket, &Answer::Refuse(e.to_wire()));
        return Err(e);
    }
    let mut noise = Handshake::responder(&state.config.key, &to_vec(&hello)?)?;
    let first: ByteBuf = receive(reader, socket)?;
    // Nothing but a refusal until the client has proved the key.
    let Some(join) = noise.read(&first) else {
        let e = Error::AuthenticationFailed("the manager refused the client's key".into());
        let _ = send(writer, socket, &Answer::Refuse(e.to_wire()));
        return Err(e);
    };
    let admitted = from_slice::<Join>(&join).and_then(|join| admit(state, socket, &join));
    let welcome = match &admitted {
        Ok((session, encrypted)) => Welcome::Accept {
            session: *session,
            connection: conn,
            max_frame: state.config.limits.max_frame as u64,
            encrypted: *encrypted,
        },
        Err(e) => Welcome::Refuse(e.to_wire()),
    };
    let second = noise.write(&to_vec(&welcome)?)?;
    let sent = send(writer, socket, &Answer::Noise(ByteBuf::from(second)));
    let (session, encrypted) = admitted?;
    let settled = sent.and_then(|()| {
        if reader.buffered() != 0 {
            return Err(Error::protocol(
                "the client sent bytes before the handshake was over",
            ));
        }
        socket.set_read_timeout(None)?;
        socket.set_write_timeout(None)?;
        noise.finish()
    });
    match settled {
        Ok(keys) => Ok((session, encrypted.then_some(keys))),
        Err(e) => {
            state.table.leave_session(session);
            Err(e)
        }
    }
}

/// Decides whether the manager serves a client that proved the key: its
/// encryption matches, a connection is free, its session exists. Returns
/// the session joined and whether the connection is encrypted.
fn admit(state: &ServerState, socket: &Socket, join: &Join) -> Result<(u64, bool)> {
    let address = &state.address;
    let encrypted = if socket.is_tcp() {
        match (join.encrypt, address.is_encrypted()) {
            (true, false) => {
                return Err(Error::Protocol(format!(
                    "the manager at {address} does not encrypt (it listens on a tcp-plain: \
                     address); connect to {address} to accept that"
                )))
            }
            (false, true) => {
                return Err(Error::Protocol(format!(
                    "the manager at {address} encrypts its connections; connect to {address}, \
                     or start the manager with a tcp-plain: address too"
                )))
            }
            (_, ours) => ours,
        }
    } else {
        join.encrypt || state.config.limits.encrypt_local
    };
    if state.connection_count() >= state.config.limits.max_connections as u64 {
        return Err(Error::LimitReached(format!(
            "the manager serves at most {} connections at once",
            state.config.limits.max_connections
        )));
    }
    let session = match join.session {
        Some(id) => state.table.join_session(id).map(|()| id)?,
        None => state.table.open_session(),
    };
    Ok((session, encrypted))
}
