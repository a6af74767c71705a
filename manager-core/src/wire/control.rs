//! The manager's own methods (object id 0) as they go on the wire: their
//! numbers and names, which the client and the manager share.

/// Method numbers of the control object.
pub(crate) mod method {
    pub(crate) const CREATE: u32 = 0;
    pub(crate) const STATS: u32 = 1;
    pub(crate) const PUBLISH: u32 = 2;
    pub(crate) const LOOKUP: u32 = 3;
    pub(crate) const UNPUBLISH: u32 = 4;
    pub(crate) const HOLD: u32 = 5;
    pub(crate) const REDEEM: u32 = 6;
    pub(crate) const SHUTDOWN: u32 = 7;
    pub(crate) const PING: u32 = 8;
    pub(crate) const REDEEM_ANY: u32 = 9;
    pub(crate) const CHECK: u32 = 10;
}

/// The control methods' names, by method number.
pub(crate) const METHODS: &[&str] = &[
    "create",
    "stats",
    "publish",
    "lookup",
    "unpublish",
    "hold",
    "redeem",
    "shutdown",
    "ping",
    "redeem_any",
    "check",
];

const _: () = assert!(METHODS.len() == method::CHECK as usize + 1);

pub(crate) fn method_name(m: u32) -> &'static str {
    crate::shared::method_name(METHODS, m)
}
