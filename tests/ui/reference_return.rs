use manager::shared;

#[shared]
pub struct Holder { value: i64 }

#[shared]
impl Holder {
    pub fn new() -> Self { Holder { value: 0 } }
    pub fn value(&self) -> &i64 { &self.value }
}

fn main() {}
