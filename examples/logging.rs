//! Turning on the manager's logs.
//!
//! The manager logs with `tracing`, quiet unless asked: spans for each
//! connection, handshake and call (object id, method name), and events for
//! failed authentications (with the peer address, never key material) and
//! panics in methods.
//!
//! - A manager on a thread of your process logs through your subscriber.
//! - A manager started with `start()` is its own process and never runs your
//!   `main`: set `MANAGER_LOG` (a filter like `debug` or
//!   `manager_core=trace`) and it logs to stderr.
//!
//! ```text
//! cargo run --example logging
//! MANAGER_LOG=debug cargo run --example logging
//! ```

use manager::{AuthKey, Client, Manager};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // In-process managers: install any subscriber, as for the rest of your program.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(std::io::stderr)
        .init();

    let local = Manager::builder().spawn_thread()?;
    let v = local.value(1u32)?;
    v.fetch_add(1)?;
    // A wrong key is refused and logged (as a warning) by the manager.
    let refused = Client::connect(local.address(), &AuthKey::from_bytes(b"wrong"));
    println!(
        "wrong key: {}",
        refused.err().map(|e| e.to_string()).unwrap_or_default()
    );
    local.shutdown()?;

    // A manager process: logs only if MANAGER_LOG is set in its environment,
    // which it inherits from this one.
    let child = Manager::builder().start()?;
    let q = child.value(String::from("hello"))?;
    println!("value in the manager process: {}", q.get()?);
    child.shutdown()?;
    Ok(())
}
