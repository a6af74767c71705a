//! The README's two-program TCP pair, run for real: `examples/server`
//! serves, `examples/client` (another process) uses what it published and
//! stops it; and a second server on the same port fails before serving.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::bounded;

const KEY: &str = "5e6f0a1b2c3d4e5f60718293a4b5c6d7";

/// The example binary `cargo test` built beside this test binary.
fn example(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("examples").join(name);
    path.exists().then_some(path)
}

#[test]
fn the_server_and_client_examples_work_together_over_tcp() {
    let (Some(server), Some(client)) = (example("server"), example("client")) else {
        eprintln!(
            "skipped: examples/server and client are not built (run `cargo test --workspace`)"
        );
        return;
    };
    bounded(move || {
        let mut srv = Command::new(&server)
            .arg("tcp:127.0.0.1:0")
            .env("MANAGER_KEY", KEY)
            .stdout(Stdio::piped())
            .spawn()
            .expect("the server starts");
        let mut out = BufReader::new(srv.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let address = line
            .trim()
            .strip_prefix("serving at ")
            .unwrap_or_else(|| panic!("the server says where it serves: {line:?}"))
            .to_owned();
        assert!(address.starts_with("tcp:127.0.0.1:"), "{address}");

        // A second server on the same port fails to bind, before serving.
        let taken = Command::new(&server)
            .arg(&address)
            .env("MANAGER_KEY", KEY)
            .output()
            .unwrap();
        assert!(!taken.status.success());
        assert!(String::from_utf8_lossy(&taken.stderr).contains("in use"));

        let used = Command::new(&client)
            .args([address.as_str(), "--stop"])
            .env("MANAGER_KEY", KEY)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&used.stdout);
        assert!(
            used.status.success(),
            "{said}{}",
            String::from_utf8_lossy(&used.stderr)
        );
        assert!(
            said.contains(r#"results: [("alpha", 5), ("beta", 4), ("gamma", 5)]"#),
            "{said}"
        );
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        assert!(rest.contains("stopped"), "{rest}");
        assert!(srv.wait().unwrap().success());
    });
}
