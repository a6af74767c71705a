use manager::shared;

#[shared]
pub struct Jar { coins: u32 }

#[shared]
impl Jar {
    pub fn new() -> Self { Jar { coins: 0 } }
    pub fn smash(self) -> u32 { self.coins }
}

fn main() {}
