//! `#[shared]` on every shape of input it accepts: the expansion compiles
//! without warnings, the proxies have the signatures DESIGN §2 promises, and
//! the compile-time facts (names, fingerprints, method tables, registry) hold.
//! Calls through a manager are the business of `custom_types.rs`.

use manager::__private::{Interface, TYPES};
use manager::{shared, Client, Context, Pending, Proxy, Result, Shared};
use serde::{Deserialize, Serialize};

/// A counter, with every kind of method a shared type may have.
#[shared]
pub struct Counter {
    value: i64,
}

#[shared]
impl Counter {
    /// A counter at `start`.
    pub fn new(start: i64) -> Self {
        Counter { value: start }
    }

    /// A counter at zero.
    pub fn zero() -> Counter {
        Counter { value: 0 }
    }

    /// A counter at the caller's connection id.
    pub fn for_caller(ctx: &Context) -> Self {
        Counter {
            value: ctx.connection_id() as i64,
        }
    }

    /// A counter at the length of `label`: a borrowing constructor.
    pub fn labelled(label: &str) -> Self {
        Counter {
            value: label.len() as i64,
        }
    }

    /// A parameter named like the proxy's `client`.
    pub fn named(client: String) -> Self {
        Counter {
            value: client.len() as i64,
        }
    }

    /// Adds `by`.
    pub fn incr(&mut self, by: i64) -> i64 {
        self.value += by;
        self.value
    }

    /// The value.
    pub fn get(&self) -> i64 {
        self.value
    }

    /// The value divided by `d`, or why not.
    pub fn checked_div(&self, d: i64) -> std::result::Result<i64, String> {
        self.value
            .checked_div(d)
            .ok_or_else(|| "by zero".to_owned())
    }

    /// The caller, and `x`.
    pub fn who(&self, ctx: &manager::Context, x: u8) -> u64 {
        ctx.connection_id() + u64::from(x)
    }

    /// Back to zero.
    pub fn reset(&mut self) {
        self.value = 0;
    }

    /// Returns `()` in so many words.
    #[allow(clippy::unused_unit)]
    pub fn nothing(&self) -> () {}

    /// Patterns for parameters.
    pub fn add_pair(&mut self, (a, b): (i64, i64), _: u8) -> i64 {
        self.value += a + b;
        self.value
    }

    /// Borrowed arguments, mixed with an owned one.
    pub fn add_all(&mut self, label: &str, items: &[i64], times: i64, min: &i64) -> i64 {
        let sum: i64 = items.iter().filter(|&i| i >= min).sum();
        self.value += sum * times + label.len() as i64;
        self.value
    }

    /// Bytes in, bytes out.
    pub fn echo(&self, data: Vec<u8>, _len: usize) -> Vec<u8> {
        data
    }

    /// A raw identifier.
    pub fn r#match(&self, r#type: u8) -> bool {
        r#type == 0
    }

    /// An old way.
    #[deprecated = "use `get`"]
    pub fn old(&self) -> i64 {
        self.value
    }

    /// The receiver written out.
    #[allow(clippy::needless_arbitrary_self_type)]
    pub fn typed(self: &Self) -> i64 {
        self.value
    }

    /// Server-side only: not `pub`.
    fn private_helper(&self) -> i64 {
        self.value
    }

    /// Not a constructor, no receiver: left alone.
    pub fn helper(x: i32) -> i32 {
        x
    }

    /// Not exposed either: it does not return `Self`.
    pub fn try_new(start: i64) -> Option<Self> {
        Some(Counter { value: start })
    }
}

/// An enum.
#[shared]
#[derive(Default)]
pub enum Light {
    #[default]
    Off,
    On(u8),
}

#[shared]
impl Light {
    /// Off.
    pub fn off() -> Self {
        Light::Off
    }
    /// Flips it.
    pub fn toggle(&mut self) {
        *self = match self {
            Light::Off => Light::On(100),
            Light::On(_) => Light::Off,
        };
    }
    /// Whether it is on.
    pub fn is_on(&self) -> bool {
        matches!(self, Light::On(_))
    }
}

/// A unit struct.
#[shared]
pub struct Unit;

#[shared]
impl Unit {
    /// The one.
    pub fn new() -> Self {
        Unit
    }
}

/// A tuple struct, itself serde: `Self` in a method's types is the type.
#[shared]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Point(pub i32, pub i32);

#[shared]
impl Point {
    /// At `(x, y)`.
    pub fn new(x: i32, y: i32) -> Self {
        Point(x, y)
    }
    /// This point moved by `by`: a method returning a value, not a constructor.
    pub fn moved(&self, by: Self) -> Self {
        Point(self.0 + by.0, self.1 + by.1)
    }
    /// Nearest of `points`.
    pub fn nearest(&self, points: Vec<Point>) -> Option<Self> {
        points.into_iter().next()
    }
}

/// A type holding proxies, taking and returning them.
#[shared]
#[derive(Default)]
pub struct Holder {
    held: Vec<CounterProxy>,
}

#[shared]
impl Holder {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }
    /// Keeps `c`.
    pub fn hold(&mut self, c: CounterProxy) -> usize {
        self.held.push(c);
        self.held.len()
    }
    /// A counter made in this manager.
    pub fn make(&self, ctx: &Context, start: i64) -> Result<CounterProxy> {
        CounterProxy::new(&ctx.client()?, start)
    }
}

/// Private types whose proxies nobody uses compile without dead-code warnings.
mod private {
    use manager::shared;

    #[shared]
    struct Hidden {
        n: u8,
    }

    #[shared]
    impl Hidden {
        pub fn new() -> Self {
            Hidden { n: 0 }
        }
        pub fn ping(&self) -> u8 {
            self.n
        }
    }
}

/// The same name in another module: another type.
pub mod v2 {
    use manager::shared;

    #[shared]
    pub struct Counter {
        value: i32,
    }

    #[shared]
    impl Counter {
        /// A counter at `start`.
        pub fn new(start: i32) -> Self {
            Counter { value: start }
        }
        /// Adds `by`.
        pub fn incr(&mut self, by: i32) -> i32 {
            self.value += by;
            self.value
        }
    }
}

/// The type in one module, its methods in a module inside it that imports
/// the proxy: the proxy's fields are private to the type's module.
pub mod split {
    use manager::shared;

    #[shared]
    pub struct Split {
        n: u8,
    }

    mod methods {
        use manager::shared;

        use super::{AsyncSplitProxy, Split, SplitProxy, SplitProxyDeferred};

        #[shared]
        impl Split {
            /// At `n`.
            pub fn new(n: u8) -> Self {
                Split { n }
            }
            /// The value.
            pub fn n(&self) -> u8 {
                self.n
            }
        }
    }
}

fn is_proxy<P: Proxy>() {}

#[test]
fn proxies_have_the_promised_signatures() {
    is_proxy::<CounterProxy>();
    is_proxy::<LightProxy>();
    is_proxy::<UnitProxy>();
    is_proxy::<PointProxy>();
    is_proxy::<HolderProxy>();
    is_proxy::<split::SplitProxy>();
    let _: fn(&Client, u8) -> Result<split::SplitProxy> = split::SplitProxy::new;
    let _: fn(&split::SplitProxy) -> Result<u8> = split::SplitProxy::n;

    // Constructors take the client first; the context is the manager's.
    let _: fn(&Client, i64) -> Result<CounterProxy> = CounterProxy::new;
    let _: fn(&Client) -> Result<CounterProxy> = CounterProxy::zero;
    let _: fn(&Client) -> Result<CounterProxy> = CounterProxy::for_caller;
    let _: fn(&Client, String) -> Result<CounterProxy> = CounterProxy::named;
    let _: fn(&Client, &str) -> Result<CounterProxy> = CounterProxy::labelled;
    let _: fn(&Client) -> Result<UnitProxy> = UnitProxy::new;
    let _: fn(&Client) -> Result<LightProxy> = LightProxy::off;

    // Methods take `&self` on the proxy, whatever they take on the type.
    let _: fn(&CounterProxy, i64) -> Result<i64> = CounterProxy::incr;
    let _: fn(&CounterProxy) -> Result<i64> = CounterProxy::get;
    let _: fn(&CounterProxy, i64) -> Result<std::result::Result<i64, String>> =
        CounterProxy::checked_div;
    let _: fn(&CounterProxy, u8) -> Result<u64> = CounterProxy::who;
    let _: fn(&CounterProxy) -> Result<()> = CounterProxy::reset;
    let _: fn(&CounterProxy) -> Result<()> = CounterProxy::nothing;
    let _: fn(&CounterProxy, (i64, i64), u8) -> Result<i64> = CounterProxy::add_pair;
    // Borrowed arguments stay borrowed on the proxy.
    let _: fn(&CounterProxy, &str, &[i64], i64, &i64) -> Result<i64> = CounterProxy::add_all;
    let _: fn(&CounterProxy, Vec<u8>, usize) -> Result<Vec<u8>> = CounterProxy::echo;
    let _: fn(&CounterProxy, u8) -> Result<bool> = CounterProxy::r#match;
    let _: fn(&CounterProxy) -> Result<i64> = CounterProxy::typed;
    #[allow(deprecated)]
    let _: fn(&CounterProxy) -> Result<i64> = CounterProxy::old;
    let _: fn(&LightProxy) -> Result<()> = LightProxy::toggle;
    let _: fn(&PointProxy, Point) -> Result<Point> = PointProxy::moved;
    let _: fn(&PointProxy, Vec<Point>) -> Result<Option<Point>> = PointProxy::nearest;
    let _: fn(&HolderProxy, CounterProxy) -> Result<usize> = HolderProxy::hold;
    // A method's own `Result` is the proxy's result's value.
    let _: fn(&HolderProxy, i64) -> Result<Result<CounterProxy>> = HolderProxy::make;

    // The deferred view: the same methods, returning a `Pending`.
    let _: fn(&CounterProxy) -> CounterProxyDeferred<'_> = CounterProxy::deferred;
    let _ = |d: CounterProxyDeferred<'_>| -> Result<Pending<i64>> { d.incr(1) };
    let _ = |d: CounterProxyDeferred<'_>| -> Result<Pending<()>> { d.reset() };
    let _ = |d: CounterProxyDeferred<'_>| -> Result<Pending<Vec<u8>>> { d.echo(vec![], 0) };
    let _ = |d: CounterProxyDeferred<'_>| -> Result<Pending<i64>> { d.add_all("", &[1], 1, &0) };

    // Server-side functions stay on the type.
    assert_eq!(Counter::helper(3), 3);
    assert_eq!(Counter::new(4).private_helper(), 4);
    assert!(Counter::try_new(1).is_some());
}

/// The async twins' constructors and methods, each awaited to the type its
/// blocking proxy returns (type-checked, never run).
async fn async_proxies_return_what_blocking_ones_do(client: &Client) -> Result<()> {
    let c: AsyncCounterProxy = AsyncCounterProxy::new(client, 1).await?;
    let _: AsyncCounterProxy = AsyncCounterProxy::zero(client).await?;
    let _: AsyncCounterProxy = AsyncCounterProxy::for_caller(client).await?;
    let _: AsyncCounterProxy = AsyncCounterProxy::named(client, String::new()).await?;
    let _: AsyncCounterProxy = AsyncCounterProxy::labelled(client, "label").await?;
    let _: AsyncUnitProxy = AsyncUnitProxy::new(client).await?;
    let light: AsyncLightProxy = AsyncLightProxy::off(client).await?;
    let _: split::AsyncSplitProxy = split::AsyncSplitProxy::new(client, 1).await?;

    let _: i64 = c.incr(1).await?;
    let _: i64 = c.get().await?;
    let _: std::result::Result<i64, String> = c.checked_div(2).await?;
    let _: u64 = c.who(1).await?;
    let _: () = c.reset().await?;
    let _: () = c.nothing().await?;
    let _: i64 = c.add_pair((1, 2), 0).await?;
    let _: i64 = c.add_all("", &[1], 1, &0).await?;
    let _: Vec<u8> = c.echo(vec![1], 1).await?;
    let _: bool = c.r#match(0).await?;
    let _: i64 = c.typed().await?;
    #[allow(deprecated)]
    let _: i64 = c.old().await?;
    let _: () = light.toggle().await?;
    let point = AsyncPointProxy::new(client, 0, 0).await?;
    let _: Point = point.moved(Point(1, 1)).await?;
    let _: Option<Point> = point.nearest(vec![Point(0, 0)]).await?;
    let holder = AsyncHolderProxy::new(client).await?;
    let _: usize = holder.hold(CounterProxy::from(c.clone())).await?;
    let _: Result<CounterProxy> = holder.make(1).await?;

    // Either face converts into the other.
    let blocking: CounterProxy = c.into();
    let _: AsyncCounterProxy = AsyncCounterProxy::from(blocking);
    Ok(())
}

fn is_send<T: Send>(_: &T) {}

#[test]
fn async_proxies_have_the_promised_signatures() {
    // Their futures are `Send`, whatever they borrow.
    let _ = |client: &Client| is_send(&async_proxies_return_what_blocking_ones_do(client));
    let _ = |c: &AsyncCounterProxy| is_send(&c.add_all("", &[1], 1, &0));
    // The same name in another module: another type.
    let _ = |client: Client| async move {
        let c: v2::AsyncCounterProxy = v2::AsyncCounterProxy::new(&client, 1).await?;
        let _: i32 = c.incr(1).await?;
        Ok::<_, manager::Error>(())
    };
    assert_eq!(
        <AsyncCounterProxy as Proxy>::TYPE_NAME,
        <CounterProxy as Proxy>::TYPE_NAME
    );
    assert_eq!(
        <AsyncCounterProxy as Proxy>::FINGERPRINT,
        <CounterProxy as Proxy>::FINGERPRINT
    );
    assert_eq!(
        <AsyncCounterProxy as Proxy>::__METHODS,
        <CounterProxy as Proxy>::__METHODS
    );
}

#[test]
fn type_names_are_full_paths() {
    assert_eq!(
        <Counter as Shared>::TYPE_NAME,
        concat!(module_path!(), "::Counter")
    );
    assert_eq!(
        <v2::Counter as Shared>::TYPE_NAME,
        concat!(module_path!(), "::v2::Counter")
    );
    assert_eq!(
        <CounterProxy as Proxy>::TYPE_NAME,
        <Counter as Shared>::TYPE_NAME
    );
    assert!(<Light as Shared>::TYPE_NAME.ends_with("::Light"));
}

#[test]
fn method_tables_list_proxy_methods_in_source_order() {
    assert_eq!(
        <Counter as Interface>::METHODS,
        [
            "incr",
            "get",
            "checked_div",
            "who",
            "reset",
            "nothing",
            "add_pair",
            "add_all",
            "echo",
            "match",
            "old",
            "typed",
        ]
    );
    assert_eq!(<Light as Interface>::METHODS, ["toggle", "is_on"]);
    assert!(<Unit as Interface>::METHODS.is_empty());
}

#[test]
fn fingerprints_tell_interfaces_apart() {
    let all = [
        <Counter as Interface>::FINGERPRINT,
        <v2::Counter as Interface>::FINGERPRINT,
        <Light as Interface>::FINGERPRINT,
        <Unit as Interface>::FINGERPRINT,
        <Point as Interface>::FINGERPRINT,
        <Holder as Interface>::FINGERPRINT,
    ];
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert_ne!(a, b);
        }
    }
    assert_eq!(
        <CounterProxy as Proxy>::FINGERPRINT,
        <Counter as Interface>::FINGERPRINT
    );
    assert_eq!(
        <v2::CounterProxy as Proxy>::FINGERPRINT,
        <v2::Counter as Interface>::FINGERPRINT
    );
}

#[test]
fn every_shared_type_is_in_the_registry() {
    for name in [
        <Counter as Shared>::TYPE_NAME,
        <v2::Counter as Shared>::TYPE_NAME,
        <Light as Shared>::TYPE_NAME,
        <Unit as Shared>::TYPE_NAME,
        <Point as Shared>::TYPE_NAME,
        <Holder as Shared>::TYPE_NAME,
        concat!(module_path!(), "::private::Hidden"),
    ] {
        let entries: Vec<_> = TYPES.iter().filter(|t| t.name == name).collect();
        assert_eq!(entries.len(), 1, "{name} is registered once");
    }
    let entry = TYPES
        .iter()
        .find(|t| t.name == <Counter as Shared>::TYPE_NAME);
    assert_eq!(
        entry.map(|t| t.fingerprint),
        Some(<Counter as Interface>::FINGERPRINT)
    );
}

#[test]
fn a_type_declared_in_a_function_body_expands() {
    // Doc tests declare their types in `main`: a block, not a module.
    #[shared]
    struct Local {
        n: u8,
    }

    #[shared]
    impl Local {
        pub fn new(n: &u8) -> Self {
            Local { n: *n }
        }
        pub fn n(&self) -> u8 {
            self.n
        }
    }

    let _: fn(&Client, &u8) -> Result<LocalProxy> = LocalProxy::new;
    let _: fn(&LocalProxy) -> Result<u8> = LocalProxy::n;
    assert_eq!(Local::new(&3).n(), 3);
}
