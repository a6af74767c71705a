use manager::shared;

#[shared]
pub struct Point;

#[shared]
impl Point {
    pub fn new() -> Self { Point }
    pub fn add(&self, (x, y): (i32, i32)) -> i32 { x + y }
}

fn main() {}
