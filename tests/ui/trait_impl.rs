use manager::shared;

#[shared]
pub struct Name(String);

#[shared]
impl Name {
    pub fn new() -> Self { Name(String::new()) }
}

#[shared]
impl Clone for Name {
    fn clone(&self) -> Self { Name(self.0.clone()) }
}

fn main() {}
