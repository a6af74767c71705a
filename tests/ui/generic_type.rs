use manager::shared;

#[shared]
pub struct Boxed<T> { item: T }

fn main() {}
