//! Instructions per call, counted instead of timed.
//!
//! Run by `benches/instructions.sh`, which runs this program twice per
//! workload under callgrind (`valgrind --tool=callgrind`, following the
//! manager's child process) with two call counts, and prints the
//! difference per call for the client and for the manager. Counting is
//! deterministic where timing on a shared 2-vCPU machine is not, so a change
//! to the per-call path can be compared before and after in one run.
//!
//! `instructions <workload> <calls>`, where the workload is one of
//! `get` (a `#[shared]` type's `&self` call), `incr` (its `&mut self`
//! call), `deferred64` (`incr` pipelined 64 deep) and `async1000` (1,000
//! async `incr` in flight, `join_all`, current-thread tokio). It prints its
//! own process id first, so that the script can tell the client's profile
//! from the manager's. Busy-polling is off in both processes, so that no
//! instruction counted is spent waiting.

use manager::Manager;

#[path = "common/counter.rs"]
mod counter;

use counter::{AsyncCounterProxy, Counter, CounterProxy};

const WORKLOADS: &str = "get, incr, deferred64 or async1000";

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(workload), Some(calls)) = (args.next(), args.next()) else {
        eprintln!("usage: instructions <{WORKLOADS}> <calls>");
        std::process::exit(2);
    };
    let Ok(calls) = calls.parse::<u64>() else {
        eprintln!("instructions: <calls> must be a number, not {calls:?}");
        std::process::exit(2);
    };
    println!("client pid {}", std::process::id());
    // Busy-polling off on both sides: a spin counts the instructions of
    // its waiting, which under valgrind depend on scheduling.
    let mgr = Manager::builder()
        .register::<Counter>()
        .busy_poll(false)
        .start()
        .expect("start a manager");
    mgr.set_busy_poll(false);
    let counter = CounterProxy::new(&mgr, 0).expect("create a Counter");
    // Warm: connections open, buffers grown, the busy-poll budget learned.
    for _ in 0..1000 {
        counter.get().expect("get");
    }
    match workload.as_str() {
        "get" => {
            for _ in 0..calls {
                std::hint::black_box(counter.get().expect("get"));
            }
        }
        "incr" => {
            for _ in 0..calls {
                std::hint::black_box(counter.incr(1).expect("incr"));
            }
        }
        "deferred64" => {
            let mut pending = Vec::with_capacity(64);
            for _ in 0..calls / 64 {
                for _ in 0..64 {
                    pending.push(counter.deferred().incr(1).expect("send incr"));
                }
                for p in pending.drain(..) {
                    std::hint::black_box(p.wait().expect("incr's reply"));
                }
            }
        }
        "async1000" => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            // The same object through the client's async face.
            let counter: AsyncCounterProxy = counter.clone().into();
            rt.block_on(async {
                for _ in 0..calls / 1000 {
                    let all = futures::future::join_all((0..1000).map(|_| counter.incr(1))).await;
                    std::hint::black_box(all);
                }
            });
        }
        other => {
            eprintln!("instructions: unknown workload {other:?} (one of {WORKLOADS})");
            std::process::exit(2);
        }
    }
}
