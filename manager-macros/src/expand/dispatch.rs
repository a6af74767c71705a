//! The server side: `impl Interface`, which turns a method index and encoded
//! arguments into a call on the object under its reader-writer lock, and a
//! constructor index into a new object.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};

use super::{decode_args, lent_args, local, put, registry};
use crate::model::{Constructor, Method, Receiver, SharedImpl};
use crate::parse;

/// `impl Interface for T`, spanned at the user's `impl` and type name, so
/// that a second `#[shared]` impl block is reported as a conflicting impl
/// at that block.
pub fn interface(m: &SharedImpl) -> TokenStream {
    let ty = &m.self_ty;
    let fingerprint = registry::fingerprint(m);
    let names = registry::method_names(m);
    let (this, ctx, method, args, out, ctor) = (
        local("__this"),
        local("__ctx"),
        local("__method"),
        local("__args"),
        local("__out"),
        local("__ctor"),
    );
    let arms = m
        .methods
        .iter()
        .zip(0u32..)
        .map(|(x, i)| method_arm(m, x, i));
    let ctor_arms = m
        .constructors
        .iter()
        .zip(0u32..)
        .map(|(c, i)| constructor_arm(m, c, i));

    // Parameters no arm uses are `_`.
    let named_if = |used: bool, ident: &syn::Ident| if used { quote!(#ident) } else { quote!(_) };
    let has_methods = !m.methods.is_empty();
    let call_ctx = named_if(m.methods.iter().any(|x| x.takes_ctx), &ctx);
    let call_this = named_if(has_methods, &this);
    let call_args = named_if(has_methods, &args);
    let call_out = named_if(m.methods.iter().any(|x| x.output.is_some()), &out);
    let ctor_ctx = named_if(m.constructors.iter().any(|c| c.takes_ctx), &ctx);
    let ctor_args = named_if(!m.constructors.is_empty(), &args);
    let deprecated = m.methods.iter().flat_map(|x| &x.attrs);
    let deprecated = deprecated
        .chain(m.constructors.iter().flat_map(|c| &c.attrs))
        .any(|a| a.path().is_ident("deprecated"))
        .then(|| quote_spanned!(m.impl_span=> #[allow(deprecated)]));

    let items = quote! {
        const FINGERPRINT: u64 = #fingerprint;
        const METHODS: &'static [&'static str] = &[#(#names),*];

        fn __call(
            #call_this: &::std::sync::RwLock<Self>,
            #call_ctx: &::manager::Context,
            #method: u32,
            #call_args: &mut ::manager::__private::Decoder<'_>,
            #call_out: &mut ::manager::__private::Encoder<'_>,
        ) -> ::manager::Result<()> {
            match #method {
                #(#arms)*
                _ => ::core::result::Result::Err(
                    ::manager::__private::no_such_method::<Self>(#method),
                ),
            }
        }

        fn __construct(
            #ctor_ctx: &::manager::Context,
            #ctor: u32,
            #ctor_args: &mut ::manager::__private::Decoder<'_>,
        ) -> ::manager::Result<Self> {
            match #ctor {
                #(#ctor_arms)*
                _ => ::core::result::Result::Err(
                    ::manager::__private::no_such_method::<Self>(#ctor),
                ),
            }
        }
    };
    // The impl's own tokens (not its items) at the user's `impl` and the type
    // at its name: rustc reports a conflicting impl over that span, so a
    // second `#[shared]` impl block is reported at its `impl`.
    quote_spanned! {m.impl_span=>
        #[doc(hidden)]
        #deprecated
        impl ::manager::__private::Interface for #ty {
            #items
        }
    }
}

/// `0u32 => { let by: i64 = …; T::incr(&mut *write(this), by); … }`. The
/// method is called by its path, so that no method of the lock guard can
/// stand in for it; the guard drops before the result is encoded. A
/// borrowed argument is decoded owned and lent: `T::rename(.., &name[..])`.
fn method_arm(m: &SharedImpl, x: &Method, index: u32) -> TokenStream {
    let ty = &m.self_ty;
    let ident = &x.ident;
    let decode = decode_args(&x.args);
    let this = local("__this");
    let object = match x.receiver {
        Receiver::Ref => quote!(&*::manager::__private::read(#this)),
        Receiver::Mut => quote!(&mut *::manager::__private::write(#this)),
    };
    let ctx = x.takes_ctx.then(|| local("__ctx")).into_iter();
    let args = lent_args(&x.args);
    let call = quote!(#ty::#ident(#object, #(#ctx,)* #(#args),*));
    let reply = match &x.output {
        None => quote! {
            #call;
            ::core::result::Result::Ok(())
        },
        Some(out) => {
            let ret = local("__ret");
            let put = put(&local("__out"), &ret, out, false);
            quote! {
                let #ret = #call;
                #put
            }
        }
    };
    quote! {
        #index => {
            #decode
            #reply
        }
    }
}

/// `0u32 => { let start: i64 = …; Ok(T::new(start)) }`.
fn constructor_arm(m: &SharedImpl, c: &Constructor, index: u32) -> TokenStream {
    let ty = &m.self_ty;
    let ident = &c.ident;
    let decode = decode_args(&c.args);
    let ctx = c.takes_ctx.then(|| local("__ctx")).into_iter();
    let args = lent_args(&c.args);
    quote! {
        #index => {
            #decode
            ::core::result::Result::Ok(#ty::#ident(#(#ctx,)* #(#args),*))
        }
    }
}

/// For an impl block that was refused: an interface with no methods, so that
/// `#[shared]` on the type does not add "no `#[shared]` impl block" to the
/// refusals. Nothing for blocks that could not have one (trait impls,
/// generic types): those errors are about the block itself.
pub fn stand_in(item: &syn::Item) -> TokenStream {
    let syn::Item::Impl(imp) = item else {
        return TokenStream::new();
    };
    let plain = imp.trait_.is_none()
        && imp.generics.params.is_empty()
        && imp.generics.where_clause.is_none();
    let Some(ty) = parse::impl_self_ident(imp).filter(|_| plain) else {
        return TokenStream::new();
    };
    if let syn::Type::Path(p) = &*imp.self_ty {
        if p.path.segments.iter().any(|s| !s.arguments.is_empty()) {
            return TokenStream::new();
        }
    }
    // The crate does not compile (the refusals are errors), so the bodies
    // never run.
    quote! {
        #[doc(hidden)]
        impl ::manager::__private::Interface for #ty {
            const FINGERPRINT: u64 = 0;
            const METHODS: &'static [&'static str] = &[];

            fn __call(
                _: &::std::sync::RwLock<Self>,
                _: &::manager::Context,
                _: u32,
                _: &mut ::manager::__private::Decoder<'_>,
                _: &mut ::manager::__private::Encoder<'_>,
            ) -> ::manager::Result<()> {
                ::core::unreachable!()
            }

            fn __construct(
                _: &::manager::Context,
                _: u32,
                _: &mut ::manager::__private::Decoder<'_>,
            ) -> ::manager::Result<Self> {
                ::core::unreachable!()
            }
        }
    }
}
