use manager::shared;

#[shared]
pub struct Probe;

#[shared]
impl Probe {
    pub fn new() -> Self { Probe }
    #[cfg(unix)]
    pub fn pid(&self) -> u32 { std::process::id() }
}

fn main() {}
