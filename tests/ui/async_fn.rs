use manager::shared;

#[shared]
pub struct Fetcher;

#[shared]
impl Fetcher {
    pub fn new() -> Self { Fetcher }
    pub async fn fetch(&self) -> u32 { 1 }
}

fn main() {}
