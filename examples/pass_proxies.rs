//! Proxies are values: a parent hands accounts to worker processes through a
//! shared queue; workers create receipts (new objects) and return their
//! proxies in a shared list. At the end every proxy is gone, and so is every
//! object: the manager's live object count is back to zero.
//!
//! ```text
//! cargo run --example pass_proxies
//! ```

use std::process::Command;

use manager::{shared, Address, AuthKey, Client, ListProxy, Manager, Proxy, QueueProxy};

/// A bank account living in the manager.
#[shared]
pub struct Account {
    owner: String,
    balance: i64,
}

#[shared]
impl Account {
    /// An empty account.
    pub fn new(owner: String) -> Self {
        Account { owner, balance: 0 }
    }
    /// Adds `amount`; returns the new balance.
    pub fn deposit(&mut self, amount: i64) -> i64 {
        self.balance += amount;
        self.balance
    }
    /// The balance.
    pub fn balance(&self) -> i64 {
        self.balance
    }
    /// Whose it is.
    pub fn owner(&self) -> String {
        self.owner.clone()
    }
}

const WORKERS: usize = 2;
const ACCOUNTS: usize = 6;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().nth(1).as_deref() == Some("worker") {
        return worker();
    }
    let mgr = Manager::builder().register::<Account>().start()?;
    // `None` tells a worker to stop.
    let jobs = mgr.queue::<Option<AccountProxy>>(0)?;
    let receipts = mgr.list::<AccountProxy>()?;

    for i in 0..ACCOUNTS {
        // The proxy moves into the queue; the queue keeps the account alive.
        jobs.put(Some(AccountProxy::new(&mgr, format!("account-{i}"))?))?;
    }
    for _ in 0..WORKERS {
        jobs.put(None)?;
    }
    println!("{} objects live with the jobs queued", mgr.stats()?.objects);

    let mut children = Vec::new();
    for _ in 0..WORKERS {
        children.push(
            Command::new(std::env::current_exe()?)
                .arg("worker")
                .env("PASS_ADDRESS", mgr.address().to_string())
                .env("PASS_KEY", mgr.auth_key().to_hex())
                .env("PASS_JOBS", jobs.to_token()?)
                .env("PASS_RECEIPTS", receipts.to_token()?)
                .spawn()?,
        );
    }
    for mut child in children {
        if !child.wait()?.success() {
            return Err("a worker failed".into());
        }
    }

    for receipt in receipts.to_vec()? {
        println!("{}: {}", receipt.owner()?, receipt.balance()?);
    }
    drop((jobs, receipts));
    let left = mgr.stats()?.objects;
    println!("live objects at the end: {left}");
    mgr.shutdown()?;
    if left != 0 {
        return Err(format!("{left} objects leaked").into());
    }
    Ok(())
}

/// Takes accounts from the queue, deposits, and files a receipt: a new
/// object whose proxy goes into the shared list.
fn worker() -> Result<(), Box<dyn std::error::Error>> {
    let key = AuthKey::from_hex(&std::env::var("PASS_KEY")?)?;
    let address: Address = std::env::var("PASS_ADDRESS")?.parse()?;
    let client = Client::connect(&address, &key)?;
    let jobs = QueueProxy::<Option<AccountProxy>>::from_token(&std::env::var("PASS_JOBS")?, &key)?;
    let receipts = ListProxy::<AccountProxy>::from_token(&std::env::var("PASS_RECEIPTS")?, &key)?;
    while let Some(account) = jobs.get()? {
        let balance = account.deposit(100)?;
        let receipt = AccountProxy::new(&client, format!("receipt for {}", account.owner()?))?;
        receipt.deposit(balance)?;
        receipts.push(receipt)?;
    }
    Ok(())
}
