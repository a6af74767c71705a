use manager::shared;

#[shared]
pub struct Doomed;

#[shared]
impl Doomed {
    pub fn new() -> Self { Doomed }
    pub fn crash(&self) -> ! { panic!("crash") }
}

fn main() {}
