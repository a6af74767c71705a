//! How long a blocking built-in call waits.

use std::time::{Duration, Instant};

use crate::builtins::Arg;
use crate::error::Result;
use crate::wire::codec::Decoder;

/// How long a blocking call may wait: not at all (`try_*`), forever (the
/// plain form), or until a deadline (`*_timeout`, decoded from its
/// `Duration`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    /// Not at all.
    No,
    /// As long as it takes.
    Forever,
    /// Until this instant.
    Until(Instant),
}

impl Wait {
    /// The deadline as [`Context::wait_until`](crate::Context::wait_until)
    /// takes it: `None` for none; not waiting is a deadline of now.
    pub(crate) fn deadline(self) -> Option<Instant> {
        match self {
            Wait::No => Some(Instant::now()),
            Wait::Forever => None,
            Wait::Until(deadline) => Some(deadline),
        }
    }
}

/// A timeout from now; forever if that is beyond what `Instant` can hold.
impl<'a> Arg<'a> for Wait {
    fn take(args: &mut Decoder<'a>) -> Result<Self> {
        let timeout: Duration = args.take()?;
        Ok(Instant::now()
            .checked_add(timeout)
            .map_or(Wait::Forever, Wait::Until))
    }
}
