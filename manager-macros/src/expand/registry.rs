//! What the program knows about a shared type: its `Shared` impl (its name
//! on the wire), its interface fingerprint, and its entry in the link-time
//! registry through which a spawned manager process finds it by name.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};

use super::proxy_ident;
use crate::model::{self, Arg, Receiver, SharedImpl, SharedType};

/// `impl Shared for T`, and `T`'s entry in the registry of shared types.
pub fn shared_impl(t: &SharedType) -> TokenStream {
    let ty = &t.ident;
    let proxy = proxy_ident(ty);
    let type_name = type_name(ty);
    // The one requirement that the type be `Send + Sync`, spanned at its
    // name: where the compiler says which field is not.
    let entry = quote_spanned! {ty.span()=>
        const __ENTRY: ::manager::__private::TypeEntry =
            ::manager::__private::TypeEntry::new::<#ty>();
    };
    quote! {
        impl ::manager::Shared for #ty {
            const TYPE_NAME: &'static str = #type_name;
            type Proxy = #proxy;
            #entry
        }

        const _: () = {
            #[::manager::__private::linkme::distributed_slice(::manager::__private::TYPES)]
            #[linkme(crate = ::manager::__private::linkme)]
            static __MANAGER_TYPE_ENTRY: ::manager::__private::TypeEntry =
                ::manager::__private::TypeEntry::of::<#ty>();
        };
    }
}

/// Compiles only if the type is `#[shared]` and the proxy the impl block's
/// module sees is its own, not `proxy::stand_in`'s: spanned at the type's
/// name in `impl Counter`, where the error says to add `#[shared]` to the
/// type, or to import its proxy.
pub fn proxy_check(m: &SharedImpl) -> TokenStream {
    let ty = &m.self_ty;
    let proxy = proxy_ident(ty);
    quote_spanned! {ty.span()=>
        const _: () = ::manager::__private::assert_proxy::<#ty, #proxy>();
    }
}

/// The type's full path: `module_path!()` and its name.
fn type_name(ty: &syn::Ident) -> TokenStream {
    let name = model::name(ty);
    quote!(::core::concat!(::core::module_path!(), "::", #name))
}

/// The interface fingerprint: a hash of the type's full path and every
/// method's and constructor's signature, in index order.
pub fn fingerprint(m: &SharedImpl) -> TokenStream {
    let type_name = type_name(&m.self_ty);
    let signatures = signatures(m);
    quote!(::manager::__private::fingerprint(#type_name, &[#(#signatures),*]))
}

/// `incr(&mut self, i64) -> i64` for each method, then `new(i64) -> Self`
/// for each constructor: names, receivers, argument and result types, as
/// written (the context the manager supplies is no part of it).
pub fn signatures(m: &SharedImpl) -> Vec<String> {
    let methods = m.methods.iter().map(|x| {
        let receiver = match x.receiver {
            Receiver::Ref => "&self",
            Receiver::Mut => "&mut self",
        };
        let params: Vec<String> = std::iter::once(receiver.to_owned())
            .chain(x.args.iter().map(arg_type))
            .collect();
        let output = x
            .output
            .as_ref()
            .map_or_else(|| "()".to_owned(), |o| type_text(&o.ty));
        format!(
            "{}({}) -> {}",
            model::name(&x.ident),
            params.join(", "),
            output
        )
    });
    let ctors = m.constructors.iter().map(|c| {
        let params: Vec<String> = c.args.iter().map(arg_type).collect();
        format!("{}({}) -> Self", model::name(&c.ident), params.join(", "))
    });
    methods.chain(ctors).collect()
}

/// The method names, by index, for errors and logs.
pub fn method_names(m: &SharedImpl) -> Vec<String> {
    m.methods.iter().map(|x| model::name(&x.ident)).collect()
}

/// An argument's type as the caller's encoding sees it: a borrowed argument
/// is its owned type (`&str` is `String`, `&[T]` is `Vec<T>`, `&T` is `T`),
/// because the two are sent alike, so a client whose method takes a `String`
/// and a manager whose method takes a `&str` speak the same interface.
fn arg_type(a: &Arg) -> String {
    a.signature.clone()
}

fn type_text(ty: &syn::Type) -> String {
    model::type_text(ty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SharedItem;

    fn signatures_of(item: syn::Item) -> Vec<String> {
        match SharedItem::from_syn(&item) {
            Ok(SharedItem::Impl(m)) => signatures(&m),
            _ => panic!("an accepted impl block"),
        }
    }

    #[test]
    fn signatures_list_methods_then_constructors() {
        let got = signatures_of(syn::parse_quote! {
            impl Counter {
                pub fn new(start: i64) -> Self { Counter { value: start } }
                pub fn incr(&mut self, by: i64) -> i64 { by }
                pub fn who(&self, ctx: &manager::Context, x: u8) -> u64 { 0 }
                pub fn reset(&mut self) {}
                pub fn checked_div(&self, d: i64) -> Result<i64, String> { Ok(d) }
            }
        });
        assert_eq!(
            got,
            [
                "incr(&mut self, i64) -> i64",
                "who(&self, u8) -> u64",
                "reset(&mut self) -> ()",
                "checked_div(&self, i64) -> Result < i64 , String >",
                "new(i64) -> Self",
            ]
        );
    }

    #[test]
    fn borrowed_and_owned_arguments_sign_alike() {
        let borrowed = signatures_of(syn::parse_quote! {
            impl T {
                pub fn f(&self, s: &str, xs: &[u32], p: &Point) -> String { String::new() }
                pub fn new(name: &str) -> Self { T }
            }
        });
        let owned = signatures_of(syn::parse_quote! {
            impl T {
                pub fn f(&self, s: String, xs: Vec<u32>, p: Point) -> String { s }
                pub fn new(name: String) -> Self { T }
            }
        });
        assert_eq!(borrowed, owned);
        assert_eq!(
            borrowed[0],
            "f(&self, String, Vec < u32 >, Point) -> String"
        );
    }

    #[test]
    fn a_receiver_change_is_a_signature_change() {
        let a = signatures_of(syn::parse_quote! { impl T { pub fn f(&self) {} } });
        let b = signatures_of(syn::parse_quote! { impl T { pub fn f(&mut self) {} } });
        assert_ne!(a, b);
    }
}
