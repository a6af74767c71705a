//! Code generation, from the model only. `#[shared]` on the type gives the
//! proxy and its async twin (`proxy`) and the `Shared` impl with its
//! registry entry (`registry`); on the impl block, the proxies' methods
//! (`proxy`) and the server's dispatcher (`dispatch`).
//!
//! Runtime items are named only through `::manager::…`. The generated code's
//! own locals (`__args`, `__this`, …) resolve at the macro's site, so no
//! parameter name of the user's can clash with them.

mod dispatch;
mod proxy;
mod registry;

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::Ident;

use crate::model::{Arg, Lend, SharedImpl, SharedItem, WireType};

/// Everything `#[shared]` expands to, the user's item first.
pub fn shared(model: &SharedItem) -> TokenStream {
    match model {
        SharedItem::Type(t) => {
            let item = &t.item;
            let proxy = proxy::proxy_type(t);
            let registry = registry::shared_impl(t);
            quote!(#item #proxy #registry)
        }
        SharedItem::Impl(m) => {
            let mut item = m.item.clone();
            // `pub fn new() -> Self` is how a shared type is built in the
            // manager; clippy's advice to add `Default` does not apply.
            item.attrs
                .push(syn::parse_quote!(#[allow(clippy::new_without_default)]));
            // The check first, so that without `#[shared]` on the type its
            // error comes first, and the stand-ins keep it the only one.
            let check = registry::proxy_check(m);
            let stand_in = proxy::stand_in(m);
            let methods = proxy::proxy_methods(m);
            let checks = wire_type_checks(m);
            let interface = dispatch::interface(m);
            quote!(#item #check #stand_in #methods #checks #interface)
        }
    }
}

/// What a refused item expands to: the item as written and the refusals,
/// with a stand-in dispatcher for a refused impl block so that the only
/// errors the user sees are the refusals themselves.
pub fn refused(item: &syn::Item, errors: syn::Error) -> TokenStream {
    let stand_in = dispatch::stand_in(item);
    let errors = errors.to_compile_error();
    quote!(#item #stand_in #errors)
}

fn proxy_ident(ty: &Ident) -> Ident {
    format_ident!("{}Proxy", ty)
}

fn async_proxy_ident(ty: &Ident) -> Ident {
    format_ident!("Async{}Proxy", ty)
}

fn deferred_ident(ty: &Ident) -> Ident {
    format_ident!("{}ProxyDeferred", ty)
}

/// A local of the generated code, out of reach of the user's names.
fn local(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

/// `|__args| { __args.put(&a)?; …; Ok(()) }`: the closure that encodes a
/// call's arguments, each `put` spanned at its argument's type so that a
/// type that is not serde is reported there.
fn encode_args(args: &[Arg]) -> TokenStream {
    if args.is_empty() {
        return quote!(|_| ::core::result::Result::Ok(()));
    }
    let enc = local("__args");
    let puts = args.iter().map(|a| {
        let put = put(&enc, &a.ident, &a.ty, a.lend != Lend::Value);
        quote_spanned!(a.ty.ty.span()=> #put?;)
    });
    quote!(|#enc| {
        #(#puts)*
        ::core::result::Result::Ok(())
    })
}

/// `enc.put(&value)`, every token of it located at the value's type (the
/// names keeping their hygiene), so that the compiler reports a type that
/// is not serde there. A `borrowed` value is a reference already, encoded
/// where it is (`enc.put(value)`): a `&str` as a `String` is, with no copy.
fn put(enc: &Ident, value: &Ident, ty: &WireType, borrowed: bool) -> TokenStream {
    let span = ty.ty.span();
    let at_type = |ident: &Ident| {
        let mut ident = ident.clone();
        ident.set_span(ident.span().located_at(span));
        ident
    };
    let (enc, value) = (at_type(enc), at_type(value));
    let span = Span::mixed_site().located_at(span);
    let value = if borrowed {
        quote_spanned!(span=> #value)
    } else {
        quote_spanned!(span=> &#value)
    };
    if ty.bytes {
        quote_spanned!(span=> #enc.put_bytes(#value))
    } else {
        quote_spanned!(span=> #enc.put(#value))
    }
}

/// `let a: T = __args.take()?; …; __args.finish()?;`: decodes a call's
/// arguments into locals named like the parameters.
fn decode_args(args: &[Arg]) -> TokenStream {
    let dec = local("__args");
    let takes = args.iter().map(|a| {
        let (ident, ty) = (&a.ident, &a.ty.ty);
        let span = ty.span();
        if a.ty.bytes {
            quote_spanned!(span=> let #ident: #ty = #dec.take_bytes()?;)
        } else {
            quote_spanned!(span=> let #ident: #ty = #dec.take()?;)
        }
    });
    quote! {
        #(#takes)*
        #dec.finish()?;
    }
}

/// `fn(a: A, b: &B)`'s parameter list, as the proxy declares it: the
/// method's own types, borrowed ones included.
fn params(args: &[Arg]) -> Vec<TokenStream> {
    args.iter()
        .map(|a| {
            let (ident, ty) = (&a.ident, &a.param);
            quote!(#ident: #ty)
        })
        .collect()
}

/// The decoded arguments as the method takes them: by value, or lent
/// (`&name`, `&items[..]`) to a method that borrows them.
fn lent_args(args: &[Arg]) -> Vec<TokenStream> {
    args.iter()
        .map(|a| {
            let ident = &a.ident;
            match a.lend {
                Lend::Value => quote!(#ident),
                Lend::Ref => quote!(&#ident),
                Lend::Slice => quote!(&#ident[..]),
            }
        })
        .collect()
}

/// Compiles only if every argument and result type is serde, each assertion
/// spanned at its type so that the error points there. Each type once.
fn wire_type_checks(m: &SharedImpl) -> TokenStream {
    let method_types = m.methods.iter().flat_map(|x| {
        x.args
            .iter()
            .map(|a| &a.ty)
            .chain(x.output.as_ref())
            .collect::<Vec<_>>()
    });
    let ctor_types = m
        .constructors
        .iter()
        .flat_map(|c| c.args.iter().map(|a| &a.ty));
    let mut seen = Vec::new();
    let mut asserts = Vec::new();
    for wire in method_types.chain(ctor_types) {
        // Bytes go through `serde_bytes`, whatever serde says of `Vec<u8>`.
        if wire.bytes {
            continue;
        }
        let text = wire.ty.to_token_stream().to_string();
        if seen.contains(&text) {
            continue;
        }
        seen.push(text);
        let ty = &wire.ty;
        asserts.push(quote_spanned!(ty.span()=>
            ::manager::__private::assert_wire_type::<#ty>();
        ));
    }
    if asserts.is_empty() {
        return TokenStream::new();
    }
    quote! {
        const _: fn() = || {
            #(#asserts)*
        };
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use crate::model::SharedItem;

    /// Expands `input` as the attribute would, formatted.
    fn expand(input: proc_macro2::TokenStream) -> String {
        let item: syn::Item = match syn::parse2(input) {
            Ok(item) => item,
            Err(e) => panic!("test input does not parse: {e}"),
        };
        let tokens = match SharedItem::from_syn(&item) {
            Ok(model) => super::shared(&model),
            Err(e) => panic!("test input is refused: {e}"),
        };
        match syn::parse2::<syn::File>(tokens) {
            Ok(file) => prettyplease::unparse(&file),
            Err(e) => panic!("the expansion is not valid Rust: {e}"),
        }
    }

    /// The expansion of one small type, checked in so that a change to the
    /// generated code shows in review. `UPDATE_SNAPSHOTS=1` rewrites it.
    #[test]
    fn expansion_of_a_small_type_matches_its_snapshot() {
        let ty = expand(quote! {
            /// Counts.
            pub struct Counter { value: i64 }
        });
        let imp = expand(quote! {
            impl Counter {
                /// Starts at `start`.
                pub fn new(start: i64) -> Self { Counter { value: start } }
                /// Adds `by`.
                pub fn incr(&mut self, by: i64) -> i64 { self.value += by; self.value }
                pub fn get(&self) -> i64 { self.value }
                pub fn who(&self, ctx: &manager::Context) -> u64 { ctx.connection_id() }
                pub fn reset(&mut self) { self.value = 0 }
                pub fn load(&mut self, bytes: Vec<u8>) -> Result<(), String> { Ok(()) }
                /// Adds every one of `items`.
                pub fn add_all(&mut self, items: &[i64]) -> i64 { self.value += items.iter().sum::<i64>(); self.value }
                fn private(&self) {}
            }
        });
        let got =
            format!("// #[shared] on the struct\n{ty}\n// #[shared] on the impl block\n{imp}");
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/snapshots/counter.rs.txt"
        );
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            if let Err(e) = std::fs::write(path, &got) {
                panic!("cannot write {path}: {e}");
            }
            return;
        }
        let want = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            got == want,
            "the expansion changed; review it, then rerun with UPDATE_SNAPSHOTS=1 to accept it\n{got}"
        );
    }

    #[test]
    fn fingerprints_see_every_signature() {
        let a = expand(quote! { impl T { pub fn f(&self, x: i64) -> i64 { x } } });
        let b = expand(quote! { impl T { pub fn f(&mut self, x: i32) { } } });
        let c = expand(quote! { impl T { pub fn make(ctx: &Context, n: u8) -> Self { T } } });
        assert!(a.contains("\"f(&self, i64) -> i64\""), "{a}");
        assert!(b.contains("\"f(&mut self, i32) -> ()\""), "{b}");
        assert!(c.contains("\"make(u8) -> Self\""), "{c}");
    }

    #[test]
    fn an_impl_without_methods_still_expands() {
        let out = expand(quote! { impl T { fn private(&self) {} } });
        assert!(
            out.contains("impl ::manager::__private::Interface for T"),
            "{out}"
        );
    }

    #[test]
    fn raw_identifiers_keep_their_prefix_in_code_only() {
        let out = expand(quote! { impl r#Type { pub fn r#match(&self) {} } });
        assert!(out.contains("pub fn r#match(&self)"), "{out}");
        assert!(out.contains("&[\"match\"]"), "{out}");
        assert!(out.contains("TypeProxy"), "{out}");
        assert!(out.contains("impl AsyncTypeProxy"), "{out}");
        assert!(out.contains("pub async fn r#match(&self)"), "{out}");
    }
}
