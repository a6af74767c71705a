//! Frames and messages: what travels on a connection, and nothing about sockets.

pub mod codec;
pub(crate) mod control;
pub(crate) mod frame;
pub(crate) mod header;
pub(crate) mod message;
