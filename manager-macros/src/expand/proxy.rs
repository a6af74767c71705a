//! The client side: the proxy type, its deferred view and its async twin
//! (from the type), and their methods and constructors (from the impl
//! block).

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;

use super::{async_proxy_ident, deferred_ident, encode_args, params, proxy_ident};
use crate::model::{Constructor, Lend, Method, SharedImpl, SharedType};

/// The proxy, its deferred view, its async twin, and the traits every proxy
/// implements.
pub fn proxy_type(t: &SharedType) -> TokenStream {
    let ty = &t.ident;
    let vis = &t.vis;
    let proxy = proxy_ident(ty);
    let deferred = deferred_ident(ty);
    let async_proxy = async_proxy_ident(ty);
    let name = crate::model::name(ty);
    let proxy_doc = docs(&[
        &format!("Proxy to a [`{name}`] living in a manager."),
        "",
        &format!("Each shared method of `{name}` is a method here that calls the object in"),
        "its manager and returns a [`manager::Result`]; each constructor takes the",
        "[`manager::Client`] of the manager to create the object in. A proxy is a",
        "value: clone it, send it to another thread, pass it to a shared method, or",
        "hand it to another process (see [`manager::Proxy`]).",
        "[`deferred`](Self::deferred) sends calls without waiting for their replies;",
        &format!("[`{async_proxy}`] is the same proxy for async code."),
    ]);
    let deferred_doc = docs(&[
        &format!("Pipelined calls to a [`{name}`]: the methods of [`{proxy}`], each"),
        "sending its call without waiting and returning a [`manager::Pending`] for",
        "the reply.",
        "",
        "Calls sent from one thread run in the order sent, so many deferred calls",
        "cost about one round trip.",
    ]);
    let async_doc = docs(&[
        &format!("Async proxy to a [`{name}`] living in a manager."),
        "",
        &format!("The methods and constructors of [`{proxy}`], with the same arguments;"),
        "each method returns a future of its [`manager::Result`], `Send` when the",
        "arguments are `Send + Sync`, and dropping the future discards the reply.",
        &format!("A value like [`{proxy}`] (see [`manager::Proxy`]) and serialized the"),
        "same way; `From` turns either into the other, keeping the object and its",
        "reference.",
    ]);
    let blocking_traits = proxy_traits(ty, &proxy);
    let async_traits = proxy_traits(ty, &async_proxy);
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

        #blocking_traits

        #async_doc
        #[derive(Clone)]
        #vis struct #async_proxy {
            __handle: ::manager::__private::Handle,
        }

        #async_traits

        impl ::core::convert::From<#proxy> for #async_proxy {
            fn from(proxy: #proxy) -> Self {
                #async_proxy {
                    __handle: proxy.__handle,
                }
            }
        }

        impl ::core::convert::From<#async_proxy> for #proxy {
            fn from(proxy: #async_proxy) -> Self {
                #proxy {
                    __handle: proxy.__handle,
                }
            }
        }
    }
}

/// `Debug`, serde and [`Proxy`](manager::Proxy) for one of `ty`'s proxies:
/// the blocking and the async one are alike in all three.
fn proxy_traits(ty: &syn::Ident, proxy: &syn::Ident) -> TokenStream {
    quote! {
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

/// The proxy's constructors and methods, the deferred view's methods, and
/// the async proxy's constructors and methods.
pub fn proxy_methods(m: &SharedImpl) -> TokenStream {
    let proxy = proxy_ident(&m.self_ty);
    let deferred = deferred_ident(&m.self_ty);
    let async_proxy = async_proxy_ident(&m.self_ty);
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
    let async_ctors = m
        .constructors
        .iter()
        .zip(0u32..)
        .map(|(c, index)| async_constructor(c, index));
    let async_methods = m
        .methods
        .iter()
        .zip(0u32..)
        .map(|(x, index)| async_method(x, index));
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

        impl #async_proxy {
            #(#async_ctors)*
            #(#async_methods)*
        }
    }
}

/// Stand-ins for the proxy, its deferred view and its async twin, for the
/// impl block's module: glob-imported, so that the real ones, which
/// `#[shared]` on the type declares beside it, shadow them. They are in use
/// only when the type's declaration has no `#[shared]` (or its proxies are
/// not imported here); then the proxies' methods still compile on them, and
/// the one error is the assertion `registry::proxy_check` spans at the
/// type's name, instead of "cannot find type `CounterProxy`" for every use
/// of a proxy. The module's name tells the stand-ins of two impl blocks
/// apart, so that a second impl block is reported only as such.
///
/// `registry::proxy_check` sees to the blocking proxy; the assertion here
/// to the async one, which a module that imports the type's proxies must
/// import too: the blocking proxy is the real one (or a stand-in too) only
/// if the async proxy converts into it.
pub fn stand_in(m: &SharedImpl) -> TokenStream {
    let ty = &m.self_ty;
    let proxy = proxy_ident(ty);
    let deferred = deferred_ident(ty);
    let async_proxy = async_proxy_ident(ty);
    let module = quote::format_ident!(
        "__{}_stand_in_{:08x}",
        crate::model::name(ty),
        fnv32(&m.item.to_token_stream().to_string())
    );
    let construct = quote! {
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

        fn __construct_async(
            _: &::manager::Client,
            _: u32,
            _: impl ::core::ops::FnOnce(
                &mut ::manager::__private::Encoder<'_>,
            ) -> ::manager::Result<()>,
        ) -> ::manager::__private::Creating<Self> {
            ::core::unreachable!()
        }
    };
    let not_seen = format!("this `#[shared]` impl block does not see `{async_proxy}`");
    let label = format!("`{async_proxy}` is not in scope here");
    let note = format!(
        "import `{async_proxy}` here as well as `{proxy}` and `{deferred}`, from the module \
         that declares `{}`",
        crate::model::name(ty)
    );
    let at_type = |ident: &syn::Ident| {
        let mut ident = ident.clone();
        ident.set_span(ty.span());
        ident
    };
    let (seen_proxy, seen_async) = (at_type(&proxy), at_type(&async_proxy));
    let check = quote_spanned! {ty.span()=>
        const _: fn() = || {
            fn __sees<P: #module::__AsyncProxyInScope<A>, A>() {}
            __sees::<#seen_proxy, #seen_async>();
        };
    };
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

            pub(super) struct #async_proxy {
                pub(super) __handle: ::manager::__private::Handle,
            }

            impl #proxy {
                pub(super) fn deferred(&self) -> #deferred<'_> {
                    #deferred {
                        __handle: &self.__handle,
                    }
                }
            }

            impl ::manager::__private::ConstructProxy for #proxy {
                #construct
            }

            impl ::manager::__private::ConstructProxy for #async_proxy {
                #construct
            }

            impl ::core::convert::From<#proxy> for #async_proxy {
                fn from(proxy: #proxy) -> Self {
                    #async_proxy {
                        __handle: proxy.__handle,
                    }
                }
            }

            impl ::core::convert::From<#async_proxy> for #proxy {
                fn from(proxy: #async_proxy) -> Self {
                    #proxy {
                        __handle: proxy.__handle,
                    }
                }
            }

            /// Holds for the blocking proxy `Self` and the async proxy `A`
            /// the impl block's module sees if both are the type's own, or
            /// both stand-ins.
            #[diagnostic::on_unimplemented(message = #not_seen, label = #label, note = #note)]
            pub(super) trait __AsyncProxyInScope<A> {}

            impl<P: ::core::convert::From<A>, A> __AsyncProxyInScope<A> for P {}
        }

        #[allow(unused_imports)]
        use #module::*;

        #check
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
    let client_doc = constructor_doc(c);
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

/// What a proxy constructor adds to the user's docs: where the object is made.
fn constructor_doc(c: &Constructor) -> TokenStream {
    let client = &c.client;
    let runs_in = format!("Runs in the manager that `{client}` talks to, and returns a proxy");
    let mut lines = vec![runs_in.as_str(), "to the new object."];
    if c.attrs.iter().any(|a| a.path().is_ident("doc")) {
        // A paragraph of its own after the user's docs.
        lines.insert(0, "");
    }
    docs(&lines)
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

/// `pub async fn new(client: &Client, a: A) -> Result<Self>`: the async
/// twin of [`constructor`].
fn async_constructor(c: &Constructor, index: u32) -> TokenStream {
    let ident = &c.ident;
    let attrs = &c.attrs;
    let client = &c.client;
    let params = params(&c.args);
    let encode = encode_args(&c.args);
    let client_doc = constructor_doc(c);
    let lint = (c.args.len() >= 7).then(|| quote!(#[allow(clippy::too_many_arguments)]));
    quote! {
        #(#attrs)*
        #client_doc
        #lint
        pub async fn #ident(
            #client: &::manager::Client,
            #(#params),*
        ) -> ::manager::Result<Self> {
            <Self as ::manager::__private::ConstructProxy>::__construct_async(
                #client, #index, #encode,
            )
            .await
        }
    }
}

/// `pub async fn incr(&self, by: i64) -> Result<i64>`: the async twin of
/// [`method`]. Bytes in an argument are encoded into the call (the encoder
/// writes them inline when not given them to send apart), as a deferred
/// call does.
fn async_method(x: &Method, index: u32) -> TokenStream {
    let ident = &x.ident;
    let attrs = &x.attrs;
    let params = params(&x.args);
    let encode = encode_args(&x.args);
    let (output, call) = match &x.output {
        None => (
            quote!(()),
            quote!(self.__handle.call_async::<()>(#index, #encode).await),
        ),
        // Decoded at the return type, as in `method`.
        Some(out) if out.bytes => (
            out.ty.to_token_stream(),
            quote_spanned!(out.ty.span()=> self
                .__handle
                .call_async::<::manager::__private::serde_bytes::ByteBuf>(#index, #encode)
                .await
                .map(::manager::__private::serde_bytes::ByteBuf::into_vec)),
        ),
        // A result type that is not serde must get the errors it gets
        // without the async proxy, in the same order. The compiler checks an
        // `async fn` before the other bodies, so any error of its own would
        // come first: it starts with the bound of the blocking `method`'s
        // call, whose error (the first) it shows once for both, and then
        // does not repeat for `call_async`'s bound on the same type.
        Some(out) => {
            let ty = &out.ty;
            (
                quote!(#ty),
                quote_spanned!(ty.span()=>
                    #[allow(clippy::type_complexity)]
                    let _: fn(&_, _, fn(&mut ::manager::__private::Encoder<'_>) -> _)
                        -> ::manager::Result<#ty> = ::manager::__private::Handle::call;
                    self.__handle.call_async::<#ty>(#index, #encode).await
                ),
            )
        }
    };
    quote! {
        #(#attrs)*
        pub async fn #ident(&self, #(#params),*) -> ::manager::Result<#output> {
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
