//! The client side: the proxy type and its deferred view (from the type),
//! and their methods and constructors (from the impl block).

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;

use super::{deferred_ident, encode_args, params, proxy_ident};
use crate::model::{Constructor, Lend, Method, SharedImpl, SharedType};

/// The proxy, its deferred view, and the traits every proxy implements.
pub fn proxy_type(t: &SharedType) -> TokenStream {
    let ty = &t.ident;
    let vis = &t.vis;
    let proxy = proxy_ident(ty);
    let deferred = deferred_ident(ty);
    let name = crate::model::name(ty);
    let proxy_doc = docs(&[
        &format!("Proxy to a [`{name}`] living in a manager."),
        "",
        &format!("Each shared method of `{name}` is a method here that calls the object in"),
        "its manager and returns a [`manager::Result`]; each constructor takes the",
        "[`manager::Client`] of the manager to create the object in. A proxy is a",
        "value: clone it, send it to another thread, pass it to a shared method, or",
        "hand it to another process (see [`manager::Proxy`]).",
        "[`deferred`](Self::deferred) sends calls without waiting for their replies.",
    ]);
    let deferred_doc = docs(&[
        &format!("Pipelined calls to a [`{name}`]: the methods of [`{proxy}`], each"),
        "sending its call without waiting and returning a [`manager::Pending`] for",
        "the reply.",
        "",
        "Calls sent from one thread run in the order sent, so many deferred calls",
        "cost about one round trip.",
    ]);
    quote! {
        #proxy_doc
        #[derive(Clone)]
        #vis struct #proxy {
            __handle: ::manager::__private::Handle,
        }

        #deferred_doc
        #[derive(Clone, Copy)]
        #vis struct #deferred<'a> {
            __handle: &'a ::manager::__private::Handle,
        }

        impl #proxy {
            /// A view of this proxy whose methods send their calls without
            /// waiting for the replies: `proxy.deferred().method(..)?` returns a
            /// [`manager::Pending`], and [`wait`](manager::Pending::wait) takes
            /// the reply.
            pub fn deferred(&self) -> #deferred<'_> {
                #deferred {
                    __handle: &self.__handle,
                }
            }
        }

        impl ::core::fmt::Debug for #proxy {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_tuple(::core::stringify!(#proxy))
                    .field(&self.__handle)
                    .finish()
            }
        }

        impl ::manager::__private::serde::Serialize for #proxy {
            fn serialize<S: ::manager::__private::serde::Serializer>(
                &self,
                serializer: S,
            ) -> ::core::result::Result<S::Ok, S::Error> {
                ::manager::__private::serde::Serialize::serialize(&self.__handle, serializer)
            }
        }

        impl<'de> ::manager::__private::serde::Deserialize<'de> for #proxy {
            fn deserialize<D: ::manager::__private::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> ::core::result::Result<Self, D::Error> {
                ::manager::__private::deserialize_proxy::<Self, D>(deserializer)
            }
        }

        impl ::manager::Proxy for #proxy {
            const TYPE_NAME: &'static str = <#ty as ::manager::Shared>::TYPE_NAME;
            const FINGERPRINT: u64 = <#ty as ::manager::__private::Interface>::FINGERPRINT;
            const __METHODS: &'static [&'static str] =
                <#ty as ::manager::__private::Interface>::METHODS;

            fn __from_handle(handle: ::manager::__private::Handle) -> Self {
                #proxy { __handle: handle }
            }

            fn __handle(&self) -> &::manager::__private::Handle {
                &self.__handle
            }
        }
    }
}

/// The proxy's constructors and methods, and the deferred view's methods.
pub fn proxy_methods(m: &SharedImpl) -> TokenStream {
    let proxy = proxy_ident(&m.self_ty);
    let deferred = deferred_ident(&m.self_ty);
    let ctors = m
        .constructors
        .iter()
        .zip(0u32..)
        .map(|(c, index)| constructor(c, index));
    let methods = m
        .methods
        .iter()
        .zip(0u32..)
        .map(|(x, index)| method(x, index));
    let deferred_methods = m
        .methods
        .iter()
        .zip(0u32..)
        .map(|(x, index)| deferred_method(x, index));
    let deferred_impl = (!m.methods.is_empty()).then(|| {
        quote! {
            impl #deferred<'_> {
                #(#deferred_methods)*
            }
        }
    });
    if m.constructors.is_empty() && m.methods.is_empty() {
        return TokenStream::new();
    }
    quote! {
        impl #proxy {
            #(#ctors)*
            #(#methods)*
        }

        #deferred_impl
    }
}

/// Stand-ins for the proxy and its deferred view, for the impl block's
/// module: glob-imported, so that the real ones, which `#[shared]` on the
/// type declares beside it, shadow them. They are in use only when the
/// type's declaration has no `#[shared]` (or its proxy is not imported
/// here); then the proxy's methods still compile on them, and the one error
/// is the assertion `registry::proxy_check` spans at the type's name,
/// instead of "cannot find type `CounterProxy`" for every use of the proxy.
/// The module's name tells the stand-ins of two impl blocks apart, so that
/// a second impl block is reported only as such.
pub fn stand_in(m: &SharedImpl) -> TokenStream {
    let ty = &m.self_ty;
    let proxy = proxy_ident(ty);
    let deferred = deferred_ident(ty);
    let module = quote::format_ident!(
        "__{}_stand_in_{:08x}",
        crate::model::name(ty),
        fnv32(&m.item.to_token_stream().to_string())
    );
    quote! {
        #[doc(hidden)]
        #[allow(non_snake_case, dead_code)]
        mod #module {
            pub(super) struct #proxy {
                pub(super) __handle: ::manager::__private::Handle,
            }

            pub(super) struct #deferred<'a> {
                pub(super) __handle: &'a ::manager::__private::Handle,
            }

            impl #proxy {
                pub(super) fn deferred(&self) -> #deferred<'_> {
                    #deferred {
                        __handle: &self.__handle,
                    }
                }
            }

            impl ::manager::__private::ConstructProxy for #proxy {
                fn __construct(
                    _: &::manager::Client,
                    _: u32,
                    _: impl ::core::ops::FnOnce(
                        &mut ::manager::__private::Encoder<'_>,
                    ) -> ::manager::Result<()>,
                ) -> ::manager::Result<Self> {
                    // In use only in a crate that does not compile.
                    ::core::unreachable!()
                }
            }
        }

        #[allow(unused_imports)]
        use #module::*;
    }
}

/// FNV-1a, 32 bits: a short name that differs between two impl blocks.
fn fnv32(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// `pub fn new(client: &Client, a: A) -> Result<Self>`: builds the object in
/// the manager and returns its proxy.
fn constructor(c: &Constructor, index: u32) -> TokenStream {
    let ident = &c.ident;
    let attrs = &c.attrs;
    let client = &c.client;
    let params = params(&c.args);
    let encode = encode_args(&c.args);
    let runs_in = format!("Runs in the manager that `{client}` talks to, and returns a proxy");
    let mut lines = vec![runs_in.as_str(), "to the new object."];
    if attrs.iter().any(|a| a.path().is_ident("doc")) {
        // A paragraph of its own after the user's docs.
        lines.insert(0, "");
    }
    let client_doc = docs(&lines);
    // One parameter more than the user's constructor.
    let lint = (c.args.len() >= 7).then(|| quote!(#[allow(clippy::too_many_arguments)]));
    quote! {
        #(#attrs)*
        #client_doc
        #lint
        pub fn #ident(#client: &::manager::Client, #(#params),*) -> ::manager::Result<Self> {
            <Self as ::manager::__private::ConstructProxy>::__construct(#client, #index, #encode)
        }
    }
}

/// `pub fn incr(&self, by: i64) -> Result<i64>`: calls and waits.
fn method(x: &Method, index: u32) -> TokenStream {
    let ident = &x.ident;
    let attrs = &x.attrs;
    let params = params(&x.args);
    let encode = encode_args(&x.args);
    // A `Vec<u8>` or `&[u8]` argument (the first) is written from where it is.
    let (callee, args) = match x.args.iter().find(|a| a.ty.bytes) {
        Some(a) => {
            let bytes = &a.ident;
            let bytes = match a.lend {
                Lend::Value => quote!(&#bytes),
                Lend::Ref | Lend::Slice => quote!(#bytes),
            };
            ("call_with_bytes", quote!(#index, #bytes, #encode))
        }
        None => ("call", quote!(#index, #encode)),
    };
    // Spanned like the code around it, where the compiler reports the
    // result type's missing serde bound.
    let callee = |span| syn::Ident::new(callee, span);
    let (output, call) = match &x.output {
        None => {
            let callee = callee(proc_macro2::Span::call_site());
            (quote!(()), quote!(self.__handle.#callee(#args)))
        }
        // The reply is decoded here: spanned at the return type, so that a
        // type that is not serde is reported there.
        Some(out) if out.bytes => {
            let callee = callee(out.ty.span());
            (
                out.ty.to_token_stream(),
                quote_spanned!(out.ty.span()=> self
                    .__handle
                    .#callee::<::manager::__private::serde_bytes::ByteBuf>(#args)
                    .map(::manager::__private::serde_bytes::ByteBuf::into_vec)),
            )
        }
        Some(out) => {
            let ty = &out.ty;
            let callee = callee(ty.span());
            (
                quote!(#ty),
                quote_spanned!(ty.span()=> self.__handle.#callee(#args)),
            )
        }
    };
    quote! {
        #(#attrs)*
        pub fn #ident(&self, #(#params),*) -> ::manager::Result<#output> {
            #call
        }
    }
}

/// `pub fn incr(&self, by: i64) -> Result<Pending<i64>>`: sends, does not wait.
fn deferred_method(x: &Method, index: u32) -> TokenStream {
    let ident = &x.ident;
    let attrs = &x.attrs;
    let params = params(&x.args);
    let encode = encode_args(&x.args);
    let (output, call) = match &x.output {
        None => (
            quote!(()),
            quote!(self.__handle.call_deferred(#index, #encode)),
        ),
        Some(out) => {
            let ty = &out.ty;
            (
                quote!(#ty),
                quote_spanned!(ty.span()=> self.__handle.call_deferred(#index, #encode)),
            )
        }
    };
    quote! {
        #(#attrs)*
        pub fn #ident(&self, #(#params),*) -> ::manager::Result<::manager::Pending<#output>> {
            #call
        }
    }
}

/// `#[doc = " line"]` for each line, as `///` comments expand.
fn docs(lines: &[&str]) -> TokenStream {
    let lines = lines.iter().map(|line| {
        let line = if line.is_empty() {
            String::new()
        } else {
            format!(" {line}")
        };
        quote!(#[doc = #line])
    });
    quote!(#(#lines)*)
}
