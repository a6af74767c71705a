use manager::shared;

#[shared]
pub trait Speaker {
    fn speak(&self) -> String;
}

fn main() {}
