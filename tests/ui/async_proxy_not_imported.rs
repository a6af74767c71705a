mod counter {
    use manager::shared;

    #[shared]
    pub struct Counter { value: i64 }

    mod methods {
        use manager::shared;

        use super::{Counter, CounterProxy, CounterProxyDeferred};

        #[shared]
        impl Counter {
            pub fn new() -> Self { Counter { value: 0 } }
            pub fn get(&self) -> i64 { self.value }
        }
    }
}

fn main() {}
