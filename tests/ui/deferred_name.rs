use manager::shared;

#[shared]
pub struct Queue;

#[shared]
impl Queue {
    pub fn new() -> Self { Queue }
    pub fn deferred(&self) -> bool { true }
}

fn main() {}
