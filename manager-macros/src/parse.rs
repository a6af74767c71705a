//! The input as `#[shared]` first sees it: which kind of item it is, and, for
//! an impl block, which functions the proxy exposes and how their parameters
//! split into receiver, context and arguments. Nothing here refuses anything
//! but an item `#[shared]` cannot go on; `check` judges the rest.

use quote::ToTokens;
use syn::{FnArg, Generics, ImplItem, ImplItemFn, Item, ItemImpl, PatType, ReturnType, Type};

/// The item under `#[shared]`.
pub enum Input<'a> {
    /// A struct or an enum.
    Type(TypeItem<'a>),
    /// An impl block, inherent or not (`check` refuses trait impls).
    Impl(ImplBlock<'a>),
}

pub struct TypeItem<'a> {
    pub item: &'a Item,
    pub ident: &'a syn::Ident,
    pub vis: &'a syn::Visibility,
    pub generics: &'a Generics,
}

pub struct ImplBlock<'a> {
    pub item: &'a ItemImpl,
    /// The implementing type's name, when it is written as a plain name.
    pub self_ident: Option<&'a syn::Ident>,
    /// The functions the proxy exposes, in source order.
    pub exposed: Vec<ExposedFn<'a>>,
}

/// A `pub fn` of the impl block that the proxy exposes.
pub struct ExposedFn<'a> {
    pub func: &'a ImplItemFn,
    /// `Some` for a method (any form of `self`), `None` for a constructor.
    pub receiver: Option<&'a syn::Receiver>,
    /// The `ctx: &Context` parameter, first after `self`, that the manager supplies.
    pub ctx: Option<&'a PatType>,
    /// The parameters the caller passes.
    pub args: Vec<&'a PatType>,
}

impl<'a> Input<'a> {
    pub fn from_syn(item: &'a Item) -> syn::Result<Input<'a>> {
        match item {
            Item::Struct(s) => Ok(Input::Type(TypeItem {
                item,
                ident: &s.ident,
                vis: &s.vis,
                generics: &s.generics,
            })),
            Item::Enum(e) => Ok(Input::Type(TypeItem {
                item,
                ident: &e.ident,
                vis: &e.vis,
                generics: &e.generics,
            })),
            Item::Impl(i) => Ok(Input::Impl(ImplBlock::from_syn(i))),
            other => Err(syn::Error::new_spanned(
                item_keyword(other),
                "#[shared] goes on a struct, an enum, or its inherent impl block",
            )),
        }
    }
}

impl<'a> ImplBlock<'a> {
    fn from_syn(item: &'a ItemImpl) -> ImplBlock<'a> {
        let self_ident = impl_self_ident(item);
        let exposed = item
            .items
            .iter()
            .filter_map(|it| match it {
                ImplItem::Fn(f) => ExposedFn::from_syn(f, self_ident),
                _ => None,
            })
            .collect();
        ImplBlock {
            item,
            self_ident,
            exposed,
        }
    }
}

impl<'a> ExposedFn<'a> {
    /// `None` for a function the proxy does not expose: one that is not
    /// `pub`, or a `pub` associated function that does not return `Self`.
    fn from_syn(func: &'a ImplItemFn, self_ident: Option<&syn::Ident>) -> Option<ExposedFn<'a>> {
        if !matches!(func.vis, syn::Visibility::Public(_)) {
            return None;
        }
        let mut inputs = func.sig.inputs.iter().peekable();
        let receiver = match inputs.peek() {
            Some(FnArg::Receiver(r)) => {
                inputs.next();
                Some(r)
            }
            _ => None,
        };
        if receiver.is_none() && !returns_self(&func.sig.output, self_ident) {
            return None;
        }
        let mut args: Vec<&PatType> = inputs
            .filter_map(|input| match input {
                FnArg::Typed(t) => Some(t),
                FnArg::Receiver(_) => None,
            })
            .collect();
        let ctx = match args.first() {
            Some(first) if is_context(&first.ty) => Some(args.remove(0)),
            _ => None,
        };
        Some(ExposedFn {
            func,
            receiver,
            ctx,
            args,
        })
    }
}

/// The name of the type an impl block is for, if it is written as a plain
/// name (`impl Counter`, or `impl Boxed<T>` for `check` to refuse).
pub fn impl_self_ident(item: &ItemImpl) -> Option<&syn::Ident> {
    match &*item.self_ty {
        Type::Path(p) if p.qself.is_none() && p.path.leading_colon.is_none() => {
            match p.path.segments.first() {
                Some(seg) if p.path.segments.len() == 1 => Some(&seg.ident),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Whether `ty` is `&Context`, by the last segment of its path
/// (`&Context`, `&manager::Context`): the parameter the manager supplies.
pub fn is_context(ty: &Type) -> bool {
    match ty {
        Type::Reference(r) if r.mutability.is_none() => is_context_path(&r.elem),
        _ => false,
    }
}

/// Whether `ty` names the type `Context`, behind a reference or not.
pub fn is_context_path(ty: &Type) -> bool {
    match ty {
        Type::Path(p) if p.qself.is_none() => p
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "Context" && s.arguments.is_empty()),
        _ => false,
    }
}

/// `ty` without the parentheses or invisible groups around it: `(&str)` is `&str`.
pub fn peel(ty: &Type) -> &Type {
    match ty {
        Type::Paren(p) => peel(&p.elem),
        Type::Group(g) => peel(&g.elem),
        other => other,
    }
}

/// Whether `ty` is `Self` or the type's own name, as a constructor returns.
pub fn is_self_type(ty: &Type, self_ident: Option<&syn::Ident>) -> bool {
    match ty {
        Type::Path(p) if p.qself.is_none() => {
            p.path.is_ident("Self") || self_ident.is_some_and(|i| p.path.is_ident(i))
        }
        Type::Paren(p) => is_self_type(&p.elem, self_ident),
        Type::Group(g) => is_self_type(&g.elem, self_ident),
        _ => false,
    }
}

fn returns_self(output: &ReturnType, self_ident: Option<&syn::Ident>) -> bool {
    match output {
        ReturnType::Type(_, ty) => is_self_type(ty, self_ident),
        ReturnType::Default => false,
    }
}

/// The leading token of an item, to point an error at.
fn item_keyword(item: &Item) -> proc_macro2::TokenStream {
    match item {
        Item::Fn(f) => f.sig.fn_token.to_token_stream(),
        Item::Trait(t) => t.trait_token.to_token_stream(),
        Item::TraitAlias(t) => t.trait_token.to_token_stream(),
        Item::Union(u) => u.union_token.to_token_stream(),
        Item::Mod(m) => m.mod_token.to_token_stream(),
        Item::Const(c) => c.const_token.to_token_stream(),
        Item::Static(s) => s.static_token.to_token_stream(),
        Item::Type(t) => t.type_token.to_token_stream(),
        Item::Use(u) => u.use_token.to_token_stream(),
        Item::ExternCrate(e) => e.extern_token.to_token_stream(),
        Item::ForeignMod(f) => f.abi.to_token_stream(),
        Item::Macro(m) => m.mac.path.to_token_stream(),
        other => other.to_token_stream(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn exposed_names(item: &Item) -> Vec<String> {
        let Ok(Input::Impl(block)) = Input::from_syn(item) else {
            return Vec::new();
        };
        block
            .exposed
            .iter()
            .map(|f| f.func.sig.ident.to_string())
            .collect()
    }

    #[test]
    fn exposes_pub_methods_and_constructors_only() {
        let item: Item = parse_quote! {
            impl Counter {
                pub fn new() -> Self { Counter }
                pub fn zero() -> Counter { Counter }
                pub fn get(&self) -> i64 { 0 }
                pub fn by_value(self) {}
                fn private(&self) {}
                pub(crate) fn crate_only(&self) {}
                pub fn helper(x: i32) -> i32 { x }
                pub fn maybe() -> Option<Self> { None }
            }
        };
        assert_eq!(
            exposed_names(&item),
            ["new", "zero", "get", "by_value"],
            "pub methods (of any receiver, for check to judge) and constructors"
        );
    }

    #[test]
    fn the_context_is_recognised_only_first_after_self() {
        let item: Item = parse_quote! {
            impl T {
                pub fn a(&self, ctx: &manager::Context, x: u8) {}
                pub fn b(&self, x: u8, ctx: &Context) {}
                pub fn c(&self, ctx: &mut Context) {}
                pub fn d(ctx: &Context, x: u8) -> Self { T }
            }
        };
        let Ok(Input::Impl(block)) = Input::from_syn(&item) else {
            panic!("an impl block");
        };
        let ctx: Vec<bool> = block.exposed.iter().map(|f| f.ctx.is_some()).collect();
        let args: Vec<usize> = block.exposed.iter().map(|f| f.args.len()).collect();
        assert_eq!(ctx, [true, false, false, true]);
        assert_eq!(args, [1, 2, 1, 1]);
    }

    #[test]
    fn other_items_are_refused_at_their_keyword() {
        let item: Item = parse_quote! { pub union U { a: u8 } };
        let Err(e) = Input::from_syn(&item) else {
            panic!("a union is refused");
        };
        assert_eq!(
            e.to_string(),
            "#[shared] goes on a struct, an enum, or its inherent impl block"
        );
    }
}
