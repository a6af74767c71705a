//! A client of `examples/server.rs`, in another program: it finds the
//! server's objects by name, hands out jobs, does them, and reads the
//! results.
//!
//! ```text
//! MANAGER_KEY=... cargo run --example client [ADDRESS] [--stop]
//! ```
//!
//! `--stop` asks the server to shut down afterwards.

use manager::{AuthKey, Client, DictProxy, JoinableQueueProxy};

fn main() -> manager::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let stop = args.iter().any(|a| a == "--stop");
    args.retain(|a| a != "--stop");
    let address = args
        .first()
        .map_or("tcp:127.0.0.1:5050", String::as_str)
        .parse()?;
    let Ok(hex) = std::env::var("MANAGER_KEY") else {
        eprintln!("set MANAGER_KEY to the key the server printed");
        std::process::exit(2);
    };
    let client = Client::connect(&address, &AuthKey::from_hex(&hex)?)?;
    let jobs: JoinableQueueProxy<String> = client.lookup("jobs")?;
    let results: DictProxy<String, usize> = client.lookup("results")?;
    for word in ["alpha", "beta", "gamma"] {
        jobs.put(word.to_owned())?;
    }
    // Here the same program does the work; any number of others could.
    while let Some(word) = jobs.get_timeout(std::time::Duration::from_millis(100))? {
        results.insert(word.clone(), word.len())?;
        jobs.task_done()?;
    }
    jobs.join()?;
    let mut done = results.items()?;
    done.sort();
    println!("results: {done:?}");
    if stop {
        client.shutdown_manager()?;
    }
    Ok(())
}
