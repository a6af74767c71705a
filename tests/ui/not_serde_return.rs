use manager::shared;

pub struct Opaque;

#[shared]
pub struct Source;

#[shared]
impl Source {
    pub fn new() -> Self { Source }
    pub fn make(&self) -> Opaque { Opaque }
}

fn main() {}
