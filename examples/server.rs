//! A dedicated manager over TCP, with a client in another program
//! (`examples/client.rs`): Python's "register, create and publish, then
//! `serve_forever()`".
//!
//! ```text
//! MANAGER_KEY=$(openssl rand -hex 32) cargo run --example server
//! MANAGER_KEY=... cargo run --example client          # in another terminal
//! ```
//!
//! The address defaults to `tcp:127.0.0.1:5050` (encrypted); pass another
//! as the first argument. Without `MANAGER_KEY` the server makes a key and
//! prints it. Ctrl-C (SIGINT) or SIGTERM stops it cleanly, and so does a
//! client's `shutdown_manager()`.

use manager::{AuthKey, Manager};

fn main() -> manager::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tcp:127.0.0.1:5050".to_owned())
        .parse()?;
    let key = match std::env::var("MANAGER_KEY") {
        Ok(hex) => AuthKey::from_hex(&hex)?,
        Err(_) => {
            let key = AuthKey::random();
            println!("MANAGER_KEY={}", key.to_hex());
            key
        }
    };
    Manager::builder()
        .address(address)
        .auth_key(key)
        .serve_with(|client| {
            // What clients find by name; it lives until unpublished.
            client.publish("jobs", &client.joinable_queue::<String>(0)?)?;
            client.publish("results", &client.dict::<String, usize>()?)?;
            println!("serving at {}", client.address());
            Ok(())
        })?;
    println!("stopped");
    Ok(())
}
