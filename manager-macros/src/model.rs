//! The validated model of a `#[shared]` item: code generation reads only this.

use proc_macro2::Span;
use syn::{FnArg, ImplItem, Item, Pat, ReturnType, Type, Visibility};

use crate::check;

/// What `#[shared]` was put on.
pub enum SharedItem {
    /// A struct or enum: the proxy and the `Shared` impl.
    Type(SharedType),
    /// Its inherent impl block: the dispatcher and the proxy's methods.
    Impl(SharedImpl),
}

pub struct SharedType {
    pub ident: syn::Ident,
    pub vis: Visibility,
}

pub struct SharedImpl {
    pub self_ty: syn::Ident,
    pub impl_span: Span,
    pub methods: Vec<Method>,
    pub constructors: Vec<Constructor>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Receiver {
    Ref,
    Mut,
}

pub struct Arg {
    pub ident: syn::Ident,
    pub ty: Type,
}

pub struct Method {
    pub ident: syn::Ident,
    pub receiver: Receiver,
    pub takes_ctx: bool,
    pub args: Vec<Arg>,
    pub output: Option<Type>,
    pub docs: Vec<syn::Attribute>,
}

pub struct Constructor {
    pub ident: syn::Ident,
    pub takes_ctx: bool,
    pub args: Vec<Arg>,
    pub docs: Vec<syn::Attribute>,
}

impl SharedItem {
    pub fn from_syn(item: &Item) -> syn::Result<SharedItem> {
        match item {
            Item::Struct(s) => {
                check::no_generics(&s.generics)?;
                Ok(SharedItem::Type(SharedType {
                    ident: s.ident.clone(),
                    vis: s.vis.clone(),
                }))
            }
            Item::Enum(e) => {
                check::no_generics(&e.generics)?;
                Ok(SharedItem::Type(SharedType {
                    ident: e.ident.clone(),
                    vis: e.vis.clone(),
                }))
            }
            Item::Impl(i) => SharedImpl::from_syn(i).map(SharedItem::Impl),
            other => Err(syn::Error::new_spanned(
                item_keyword(other),
                "#[shared] goes on a struct, an enum, or its inherent impl block",
            )),
        }
    }
}

/// The leading tokens of an item, to point an error at.
fn item_keyword(item: &Item) -> proc_macro2::TokenStream {
    use quote::ToTokens;
    match item {
        Item::Fn(f) => f.sig.fn_token.to_token_stream(),
        Item::Trait(t) => t.trait_token.to_token_stream(),
        Item::Union(u) => u.union_token.to_token_stream(),
        Item::Mod(m) => m.mod_token.to_token_stream(),
        Item::Const(c) => c.const_token.to_token_stream(),
        Item::Static(s) => s.static_token.to_token_stream(),
        Item::Type(t) => t.type_token.to_token_stream(),
        Item::Use(u) => u.use_token.to_token_stream(),
        other => other.to_token_stream(),
    }
}

impl SharedImpl {
    fn from_syn(item: &syn::ItemImpl) -> syn::Result<SharedImpl> {
        let mut errors = check::Errors::default();
        if let Some((_, path, _)) = &item.trait_ {
            return Err(syn::Error::new_spanned(
                path,
                "#[shared] goes on the type's inherent impl block, not on a trait impl",
            ));
        }
        errors.push(check::no_generics(&item.generics));
        let self_ty = match &*item.self_ty {
            Type::Path(p) if p.qself.is_none() && p.path.segments.len() == 1 => {
                let seg = &p.path.segments[0];
                if !seg.arguments.is_empty() {
                    errors.push(Err(syn::Error::new_spanned(
                        &seg.arguments,
                        "a shared type cannot be generic: remove the type parameters",
                    )));
                }
                seg.ident.clone()
            }
            other => return Err(syn::Error::new_spanned(
                other,
                "#[shared] impl blocks name the shared type by its plain name, e.g. `impl Counter`",
            )),
        };
        let mut methods = Vec::new();
        let mut constructors = Vec::new();
        for it in &item.items {
            let ImplItem::Fn(f) = it else { continue };
            if !matches!(f.vis, Visibility::Public(_)) {
                continue;
            }
            let docs: Vec<_> = f
                .attrs
                .iter()
                .filter(|a| a.path().is_ident("doc"))
                .cloned()
                .collect();
            let sig = &f.sig;
            let receiver = match sig.inputs.first() {
                Some(FnArg::Receiver(r)) => Some(r),
                _ => None,
            };
            let is_ctor = receiver.is_none() && returns_self(&sig.output, &self_ty);
            if receiver.is_none() && !is_ctor {
                // An associated function: stays server-side.
                continue;
            }
            errors.push(check::signature(sig));
            if sig.ident == "deferred" {
                errors.push(Err(syn::Error::new_spanned(
                    &sig.ident,
                    "a shared method cannot be named `deferred`: the proxy uses that name for pipelined calls",
                )));
            }
            let mut inputs = sig.inputs.iter().peekable();
            let receiver = match receiver {
                Some(r) => {
                    inputs.next();
                    if r.reference.is_none() {
                        errors.push(Err(syn::Error::new_spanned(
                            r,
                            "shared methods take `&self` or `&mut self`: `self` by value would move the object out of the manager",
                        )));
                        continue;
                    }
                    Some(if r.mutability.is_some() {
                        Receiver::Mut
                    } else {
                        Receiver::Ref
                    })
                }
                None => None,
            };
            let takes_ctx =
                matches!(inputs.peek(), Some(FnArg::Typed(t)) if check::is_context(&t.ty));
            if takes_ctx {
                inputs.next();
            }
            let mut args = Vec::new();
            for (i, input) in inputs.enumerate() {
                let FnArg::Typed(t) = input else { continue };
                errors.push(check::no_references(&t.ty));
                let ident = match &*t.pat {
                    Pat::Ident(p) if p.subpat.is_none() => p.ident.clone(),
                    other => {
                        errors.push(Err(syn::Error::new_spanned(
                            other,
                            "shared method arguments must be plain names, like `value: T`",
                        )));
                        syn::Ident::new(&format!("__arg{i}"), Span::call_site())
                    }
                };
                args.push(Arg {
                    ident,
                    ty: (*t.ty).clone(),
                });
            }
            match receiver {
                Some(receiver) => {
                    let output = match &sig.output {
                        ReturnType::Default => None,
                        ReturnType::Type(_, ty) => {
                            errors.push(check::no_references(ty));
                            Some((**ty).clone())
                        }
                    };
                    methods.push(Method {
                        ident: sig.ident.clone(),
                        receiver,
                        takes_ctx,
                        args,
                        output,
                        docs,
                    });
                }
                None => constructors.push(Constructor {
                    ident: sig.ident.clone(),
                    takes_ctx,
                    args,
                    docs,
                }),
            }
        }
        errors.finish()?;
        Ok(SharedImpl {
            self_ty,
            impl_span: item.impl_token.span,
            methods,
            constructors,
        })
    }
}

fn returns_self(output: &ReturnType, self_ty: &syn::Ident) -> bool {
    match output {
        ReturnType::Type(_, ty) => match &**ty {
            Type::Path(p) => {
                p.qself.is_none() && (p.path.is_ident("Self") || p.path.is_ident(self_ty))
            }
            _ => false,
        },
        ReturnType::Default => false,
    }
}
