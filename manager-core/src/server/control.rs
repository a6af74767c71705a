//! The manager's own methods (object id 0): create, find, name and release
//! objects, report stats, shut down.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::server::table::Expected;
use crate::server::ServerState;
use crate::stats::Stats;
use crate::wire::codec::{Decoder, Encoder};

pub(crate) use crate::wire::control::{method, method_name};

pub(crate) fn call(
    state: &ServerState,
    ctx: &Context,
    m: u32,
    args: &mut Decoder<'_>,
    out: &mut Encoder<'_>,
) -> Result<()> {
    match m {
        method::CREATE => {
            let type_name: String = args.take()?;
            let fingerprint: u64 = args.take()?;
            // The element types of a built-in container: the object's
            // fingerprint covers them, the type entry's does not.
            let elements: Vec<String> = args.take()?;
            let ctor: u32 = args.take()?;
            let entry = state.config.types.get(type_name.as_str()).ok_or_else(|| {
                Error::NotRegistered(format!(
                    "{type_name} (add .register::<{}>() to the ManagerBuilder)",
                    type_name.rsplit("::").next().unwrap_or(&type_name)
                ))
            })?;
            if entry.fingerprint != fingerprint {
                return Err(Error::InterfaceMismatch(format!(
                    "the manager's {type_name} was built from another interface than the \
                     client's; rebuild both from the same definition"
                )));
            }
            if elements.len() != entry.elements {
                return Err(Error::Protocol(format!(
                    "{type_name} takes {} element types, not {}",
                    entry.elements,
                    elements.len()
                )));
            }
            let mut ctor_args = Decoder::new(args.rest());
            let object = (entry.construct)(ctx, ctor, &mut ctor_args, elements)?;
            let id = state.table.insert(
                ctx.session,
                object,
                state.config.limits.max_objects_per_session,
            )?;
            out.put(&id)
        }
        method::STATS => {
            args.finish()?;
            let (sessions, names) = state.table.counts();
            let stats = Stats {
                objects: state.table.object_count(),
                connections: state.connection_count(),
                calls: state.calls.load(std::sync::atomic::Ordering::Relaxed),
                objects_by_type: state.table.objects_by_type(),
                sessions,
                names,
                blocked_calls: state.blocked.load(std::sync::atomic::Ordering::Relaxed),
                ..Stats::default()
            };
            let (busy_polls, busy_polls_caught) =
                state.reactor.get().map_or((0, 0), |r| r.spin_counts());
            let stats = Stats {
                busy_polls,
                busy_polls_caught,
                polls: state.reactor.get().map_or(0, |r| r.shard_count() as u64),
                ..stats
            };
            out.put(&stats)
        }
        method::PUBLISH => {
            let name: String = args.take()?;
            let id: u64 = args.take()?;
            args.finish()?;
            state.table.publish(&name, id)
        }
        method::LOOKUP => {
            let name: String = args.take()?;
            let expected: Expected = args.take()?;
            args.finish()?;
            let id = state.table.lookup(ctx.session, &name, &expected)?;
            out.put(&id)
        }
        method::UNPUBLISH => {
            let name: String = args.take()?;
            args.finish()?;
            state.table.unpublish(&name)
        }
        method::HOLD => {
            let id: u64 = args.take()?;
            args.finish()?;
            let token = state.table.hold(id, state.config.limits.handoff_timeout)?;
            out.put(&token)
        }
        method::REDEEM => {
            let id: u64 = args.take()?;
            let token: Option<u64> = args.take()?;
            let expected: Expected = args.take()?;
            args.finish()?;
            state.table.redeem(ctx.session, id, token, &expected)
        }
        method::SHUTDOWN => {
            // The connection loop stops the manager once this reply is sent.
            args.finish()
        }
        method::PING => args.finish(),
        method::REDEEM_ANY => {
            let id: u64 = args.take()?;
            args.finish()?;
            let fingerprint = state.table.add_session_ref_any(ctx.session, id)?;
            out.put(&fingerprint)
        }
        method::CHECK => {
            // Why a proxy that arrived in a reply refuses its calls: the
            // reply said only the object's fingerprint.
            let id: u64 = args.take()?;
            let expected: Expected = args.take()?;
            args.finish()?;
            state.table.check_interface(id, &expected)
        }
        _ => Err(Error::Protocol(format!(
            "the manager has no control method number {m}"
        ))),
    }
}
