use manager::shared;

pub struct Opaque;

#[shared]
pub struct Sink;

#[shared]
impl Sink {
    pub fn new() -> Self { Sink }
    pub fn look(&self, item: &Opaque) { let _ = item; }
}

fn main() {}
