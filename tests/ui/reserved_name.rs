use manager::shared;

#[shared]
pub struct Ticket { code: String }

#[shared]
impl Ticket {
    pub fn new() -> Self { Ticket { code: String::new() } }
    pub fn to_token(&self) -> String { self.code.clone() }
}

fn main() {}
