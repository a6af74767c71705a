use manager::shared;

pub struct Plain { value: i64 }

#[shared]
impl Plain {
    pub fn new() -> Self { Plain { value: 0 } }
    pub fn get(&self) -> i64 { self.value }
}

fn main() {}
