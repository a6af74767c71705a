//! Code generation: reads only the model.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;

use crate::model::{Arg, Receiver, SharedImpl, SharedItem, SharedType};

pub fn shared(model: &SharedItem, item: &syn::Item) -> syn::Result<TokenStream> {
    Ok(match model {
        SharedItem::Type(t) => shared_type(t, item),
        SharedItem::Impl(i) => {
            // `pub fn new() -> Self` is how a shared type is constructed in
            // the manager; clippy's advice to add `Default` does not apply.
            let mut item = item.clone();
            if let syn::Item::Impl(imp) = &mut item {
                imp.attrs
                    .push(syn::parse_quote!(#[allow(clippy::new_without_default)]));
            }
            shared_impl(i, &item)
        }
    })
}

/// For an impl block that was refused: an interface with no methods, so the
/// only errors the user sees are the refusals themselves.
pub fn stand_in(item: &syn::Item) -> TokenStream {
    let syn::Item::Impl(imp) = item else {
        return TokenStream::new();
    };
    if imp.trait_.is_some() || !imp.generics.params.is_empty() {
        return TokenStream::new();
    }
    let syn::Type::Path(p) = &*imp.self_ty else {
        return TokenStream::new();
    };
    let Some(ty) = p.path.get_ident() else {
        return TokenStream::new();
    };
    quote! {
        #[doc(hidden)]
        impl ::manager::__private::Interface for #ty {
            const FINGERPRINT: u64 = 0;
            const METHODS: &'static [&'static str] = &[];
            fn __call(
                _: &::std::sync::RwLock<Self>,
                _: &::manager::Context,
                __method: u32,
                _: &mut ::manager::__private::Decoder<'_>,
                _: &mut ::manager::__private::Encoder<'_>,
            ) -> ::manager::Result<()> {
                ::core::result::Result::Err(::manager::__private::no_such_method::<Self>(__method))
            }
            fn __construct(
                _: &::manager::Context,
                __ctor: u32,
                _: &mut ::manager::__private::Decoder<'_>,
            ) -> ::manager::Result<Self> {
                ::core::result::Result::Err(::manager::__private::no_such_method::<Self>(__ctor))
            }
        }
    }
}

fn proxy_ident(ty: &syn::Ident) -> syn::Ident {
    format_ident!("{}Proxy", ty)
}

fn deferred_ident(ty: &syn::Ident) -> syn::Ident {
    format_ident!("{}ProxyDeferred", ty)
}

fn shared_type(t: &SharedType, item: &syn::Item) -> TokenStream {
    let ty = &t.ident;
    let vis = &t.vis;
    let proxy = proxy_ident(ty);
    let deferred = deferred_ident(ty);
    let name = ty.to_string();
    let proxy_doc = format!(
        "Proxy to a [`{name}`] living in a manager: every shared method of `{name}`, \
         called remotely and returning `manager::Result`."
    );
    let deferred_doc = format!(
        "Pipelined calls to a [`{name}`]: each method sends its call without waiting and \
         returns a [`manager::Pending`] for the reply."
    );
    quote! {
        #item

        #[doc = #proxy_doc]
        #[derive(Clone)]
        #vis struct #proxy {
            __handle: ::manager::__private::Handle,
        }

        #[doc = #deferred_doc]
        #[derive(Clone, Copy)]
        #vis struct #deferred<'a> {
            __handle: &'a ::manager::__private::Handle,
        }

        impl #proxy {
            /// A view of this proxy whose methods send their calls without
            /// waiting for replies; calls from one thread run in the order sent.
            pub fn deferred(&self) -> #deferred<'_> {
                #deferred { __handle: &self.__handle }
            }
        }

        impl ::core::fmt::Debug for #proxy {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                ::core::write!(f, "{}({:?})", ::core::stringify!(#proxy), self.__handle)
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

        impl ::manager::Shared for #ty {
            const TYPE_NAME: &'static str =
                ::core::concat!(::core::module_path!(), "::", #name);
            type Proxy = #proxy;
        }

        impl ::manager::Proxy for #proxy {
            const TYPE_NAME: &'static str = <#ty as ::manager::Shared>::TYPE_NAME;
            const FINGERPRINT: u64 = <#ty as ::manager::__private::Interface>::FINGERPRINT;
            fn __from_handle(handle: ::manager::__private::Handle) -> Self {
                #proxy { __handle: handle }
            }
            fn __handle(&self) -> &::manager::__private::Handle {
                &self.__handle
            }
        }

        const _: () = {
            #[::manager::__private::linkme::distributed_slice(::manager::__private::TYPES)]
            #[linkme(crate = ::manager::__private::linkme)]
            static __MANAGER_TYPE_ENTRY: ::manager::__private::TypeEntry =
                ::manager::__private::TypeEntry::of::<#ty>();
        };
    }
}

/// `__args.put(&a)?;` for each argument, spanned at its type so a non-serde
/// argument's error points there.
/// Whether `ty` is `Vec<u8>`: serde moves those a byte at a time, while
/// `serde_bytes` copies them whole. Postcard encodes both the same way, so
/// the wire does not change.
fn is_byte_vec(ty: &syn::Type) -> bool {
    let syn::Type::Path(p) = ty else {
        return false;
    };
    let Some(last) = p.path.segments.last() else {
        return false;
    };
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return false;
    };
    last.ident == "Vec"
        && args.args.len() == 1
        && matches!(&args.args[0], syn::GenericArgument::Type(syn::Type::Path(u)) if u.path.is_ident("u8"))
}

fn encode_args(args: &[Arg]) -> TokenStream {
    let puts = args.iter().map(|a| {
        let ident = &a.ident;
        if is_byte_vec(&a.ty) {
            quote_spanned!(a.ty.span()=> __args.put(::manager::__private::serde_bytes::Bytes::new(&#ident))?;)
        } else {
            quote_spanned!(a.ty.span()=> __args.put(&#ident)?;)
        }
    });
    quote!(|__args| { #(#puts)* ::core::result::Result::Ok(()) })
}

fn decode_args(args: &[Arg]) -> TokenStream {
    let takes = args.iter().map(|a| {
        let ident = &a.ident;
        let ty = &a.ty;
        if is_byte_vec(ty) {
            quote_spanned!(ty.span()=> let #ident: #ty =
                __args.take::<::manager::__private::serde_bytes::ByteBuf>()?.into_vec();)
        } else {
            quote_spanned!(ty.span()=> let #ident: #ty = __args.take()?;)
        }
    });
    quote!(#(#takes)* __args.finish()?;)
}

fn params(args: &[Arg]) -> Vec<TokenStream> {
    args.iter()
        .map(|a| {
            let (i, t) = (&a.ident, &a.ty);
            quote!(#i: #t)
        })
        .collect()
}

fn type_text(ty: &syn::Type) -> String {
    ty.to_token_stream().to_string()
}

fn shared_impl(m: &SharedImpl, item: &syn::Item) -> TokenStream {
    let ty = &m.self_ty;
    let proxy = proxy_ident(ty);
    let deferred = deferred_ident(ty);
    let name = ty.to_string();

    let mut proxy_methods = Vec::new();
    let mut deferred_methods = Vec::new();
    let mut arms = Vec::new();
    let mut signatures = Vec::new();
    let mut names = Vec::new();
    let mut assertions = Vec::new();

    for (index, method) in m.methods.iter().enumerate() {
        let index = index as u32;
        let ident = &method.ident;
        let docs = &method.docs;
        let ps = params(&method.args);
        let encode = encode_args(&method.args);
        let decode = decode_args(&method.args);
        let out = match &method.output {
            Some(t) => quote!(#t),
            None => quote!(()),
        };
        // The result is decoded where the call is made: spanned at the
        // return type, so a non-serde return type's error points there.
        let out_span = method
            .output
            .as_ref()
            .map_or_else(Span::call_site, |t| t.span());
        let bytes_out = method.output.as_ref().is_some_and(is_byte_vec);
        let call = if bytes_out {
            quote_spanned!(out_span=> self.__handle
                .call::<::manager::__private::serde_bytes::ByteBuf>(#index, #encode)
                .map(::manager::__private::serde_bytes::ByteBuf::into_vec))
        } else {
            quote_spanned!(out_span=> self.__handle.call(#index, #encode))
        };
        let put_ret = if bytes_out {
            quote!(__out.put(::manager::__private::serde_bytes::Bytes::new(&__ret)))
        } else {
            quote!(__out.put(&__ret))
        };
        let call_deferred = quote_spanned!(out_span=> self.__handle.call_deferred(#index, #encode));
        let arg_idents: Vec<_> = method.args.iter().map(|a| &a.ident).collect();
        let ctx = method.takes_ctx.then(|| quote!(__ctx,));
        let access = match method.receiver {
            Receiver::Ref => quote!(::manager::__private::read(__this)),
            Receiver::Mut => quote!(::manager::__private::write(__this)),
        };
        proxy_methods.push(quote! {
            #(#docs)*
            pub fn #ident(&self, #(#ps),*) -> ::manager::Result<#out> {
                #call
            }
        });
        deferred_methods.push(quote! {
            #(#docs)*
            pub fn #ident(&self, #(#ps),*) -> ::manager::Result<::manager::Pending<#out>> {
                #call_deferred
            }
        });
        arms.push(quote! {
            #index => {
                #decode
                let __ret = #access.#ident(#ctx #(#arg_idents),*);
                #put_ret
            }
        });
        let recv = match method.receiver {
            Receiver::Ref => "&self",
            Receiver::Mut => "&mut self",
        };
        let arg_types: Vec<_> = method.args.iter().map(|a| type_text(&a.ty)).collect();
        signatures.push(format!(
            "{}({}{}{}) -> {}",
            ident,
            recv,
            if arg_types.is_empty() { "" } else { ", " },
            arg_types.join(", "),
            method
                .output
                .as_ref()
                .map_or_else(|| "()".to_owned(), type_text)
        ));
        names.push(ident.to_string());
        for a in &method.args {
            let t = &a.ty;
            assertions
                .push(quote_spanned!(t.span()=> ::manager::__private::assert_wire_type::<#t>();));
        }
        if let Some(t) = &method.output {
            assertions
                .push(quote_spanned!(t.span()=> ::manager::__private::assert_wire_type::<#t>();));
        }
    }

    let mut ctor_methods = Vec::new();
    let mut ctor_arms = Vec::new();
    for (index, ctor) in m.constructors.iter().enumerate() {
        let index = index as u32;
        let ident = &ctor.ident;
        let docs = &ctor.docs;
        let ps = params(&ctor.args);
        let encode = encode_args(&ctor.args);
        let decode = decode_args(&ctor.args);
        let arg_idents: Vec<_> = ctor.args.iter().map(|a| &a.ident).collect();
        let ctx = ctor.takes_ctx.then(|| quote!(__ctx,));
        let client = if ctor.args.iter().any(|a| a.ident == "client") {
            format_ident!("__client")
        } else {
            format_ident!("client")
        };
        ctor_methods.push(quote! {
            #(#docs)*
            ///
            /// Runs in the manager `client` talks to and returns a proxy to the new object.
            pub fn #ident(#client: &::manager::Client, #(#ps),*) -> ::manager::Result<Self> {
                ::manager::__private::construct::<#ty>(#client, #index, #encode)
            }
        });
        ctor_arms.push(quote! {
            #index => {
                #decode
                ::core::result::Result::Ok(#ty::#ident(#ctx #(#arg_idents),*))
            }
        });
        let arg_types: Vec<_> = ctor.args.iter().map(|a| type_text(&a.ty)).collect();
        signatures.push(format!("new {}({}) -> Self", ident, arg_types.join(", ")));
        for a in &ctor.args {
            let t = &a.ty;
            assertions
                .push(quote_spanned!(t.span()=> ::manager::__private::assert_wire_type::<#t>();));
        }
    }

    let uses_ctx =
        m.methods.iter().any(|x| x.takes_ctx) || m.constructors.iter().any(|x| x.takes_ctx);
    let ctx_binding = if uses_ctx { quote!(__ctx) } else { quote!(_) };
    let ctor_ctx_binding = if m.constructors.iter().any(|x| x.takes_ctx) {
        quote!(__ctx)
    } else {
        quote!(_)
    };
    let method_binding = if m.methods.is_empty() {
        quote!(_)
    } else {
        quote!(__this)
    };
    let args_binding = if m.methods.is_empty() {
        quote!(_)
    } else {
        quote!(__args)
    };
    let out_binding = if m.methods.is_empty() {
        quote!(_)
    } else {
        quote!(__out)
    };
    let ctor_args_binding = if m.constructors.is_empty() {
        quote!(_)
    } else {
        quote!(__args)
    };
    let ctx_binding = if m.methods.iter().any(|x| x.takes_ctx) {
        ctx_binding
    } else {
        quote!(_)
    };

    // Spanned at the user's `impl`, so that a second #[shared] impl block's
    // conflicting-implementation error points at that block.
    let interface = quote_spanned! {m.impl_span=>
        #[doc(hidden)]
        impl ::manager::__private::Interface for #ty {
            const FINGERPRINT: u64 = ::manager::__private::fingerprint(
                ::core::concat!(::core::module_path!(), "::", #name),
                &[#(#signatures),*],
            );
            const METHODS: &'static [&'static str] = &[#(#names),*];

            fn __call(
                #method_binding: &::std::sync::RwLock<Self>,
                #ctx_binding: &::manager::Context,
                __method: u32,
                #args_binding: &mut ::manager::__private::Decoder<'_>,
                #out_binding: &mut ::manager::__private::Encoder<'_>,
            ) -> ::manager::Result<()> {
                match __method {
                    #(#arms)*
                    _ => ::core::result::Result::Err(::manager::__private::no_such_method::<Self>(__method)),
                }
            }

            fn __construct(
                #ctor_ctx_binding: &::manager::Context,
                __ctor: u32,
                #ctor_args_binding: &mut ::manager::__private::Decoder<'_>,
            ) -> ::manager::Result<Self> {
                match __ctor {
                    #(#ctor_arms)*
                    _ => ::core::result::Result::Err(::manager::__private::no_such_method::<Self>(__ctor)),
                }
            }
        }
    };

    quote! {
        #item

        impl #proxy {
            #(#ctor_methods)*
            #(#proxy_methods)*
        }

        impl #deferred<'_> {
            #(#deferred_methods)*
        }

        const _: fn() = || {
            #(#assertions)*
        };

        #interface
    }
}
