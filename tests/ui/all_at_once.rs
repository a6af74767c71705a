use manager::shared;

#[shared]
pub struct Messy;

#[shared]
impl Messy {
    pub fn new() -> Self { Messy }
    pub async fn one(&self) {}
    pub fn two(self) {}
    pub fn three(&self, s: &mut String) { let _ = s; }
}

fn main() {}
