use manager::{shared, Context};

#[shared]
pub struct Greeter;

#[shared]
impl Greeter {
    pub fn new() -> Self { Greeter }
    pub fn greet(&self, name: String, ctx: &Context) -> String {
        format!("{name} on {}", ctx.connection_id())
    }
}

fn main() {}
