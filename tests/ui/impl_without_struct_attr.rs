use manager::{shared, Manager};

pub struct Plain { value: i64 }

#[shared]
impl Plain {
    pub fn new() -> Self { Plain { value: 0 } }
    pub fn get(&self) -> i64 { self.value }
    pub fn set(&mut self, value: i64) { self.value = value }
}

fn main() -> manager::Result<()> {
    let mgr = Manager::builder().register::<Plain>().spawn_thread()?;
    let plain = PlainProxy::new(&mgr)?;
    plain.set(2)?;
    assert_eq!(plain.deferred().get()?.wait()?, 2);
    Ok(())
}
