use manager::shared;

#[shared]
pub struct Buffer;

#[shared]
impl Buffer {
    pub fn new() -> Self { Buffer }
    pub unsafe fn peek(&self, at: usize) -> u8 { at as u8 }
}

fn main() {}
