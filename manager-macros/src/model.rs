//! The validated model of a `#[shared]` item: everything code generation
//! needs, decided once. `from_syn` refuses (through `check`) whatever the
//! expansion could not serve; `expand` reads only this.

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Attribute, Ident, Item, ItemImpl, Pat, PatType, ReturnType, Type, Visibility};

use crate::check::{self, Errors};
use crate::parse::{self, ExposedFn, ImplBlock, Input, TypeItem};

/// What `#[shared]` was put on.
pub enum SharedItem {
    /// A struct or enum: its proxy and its `Shared` impl.
    Type(SharedType),
    /// Its inherent impl block: the dispatcher and the proxy's methods.
    Impl(SharedImpl),
}

pub struct SharedType {
    /// The struct or enum, emitted as written.
    pub item: Item,
    pub ident: Ident,
    /// The proxy's visibility: the type's own.
    pub vis: Visibility,
}

pub struct SharedImpl {
    /// The impl block, emitted as written.
    pub item: ItemImpl,
    /// The shared type's name.
    pub self_ty: Ident,
    /// The user's `impl` keyword: the generated `Interface` impl carries its
    /// span, so that a second `#[shared]` impl block is the one reported.
    pub impl_span: Span,
    /// The proxy's methods; a method's index is its position here.
    pub methods: Vec<Method>,
    /// The constructors; a constructor's index is its position here.
    pub constructors: Vec<Constructor>,
}

/// How a method borrows the object, and so how the manager locks it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Receiver {
    /// `&self`: runs concurrently with other `&self` methods.
    Ref,
    /// `&mut self`: runs alone.
    Mut,
}

/// A type that crosses the wire.
pub struct WireType {
    /// As written, with `Self` replaced by the type's name (in the proxy,
    /// `Self` is the proxy).
    pub ty: Type,
    /// `Vec<u8>`: encoded through `serde_bytes`, which copies it whole where
    /// serde would move it a byte at a time. The encoding is the same.
    pub bytes: bool,
}

pub struct Arg {
    /// The parameter's name; a pattern that is not a plain name gets `argN`.
    pub ident: Ident,
    /// The parameter's type as the proxy declares it: the method's own
    /// (`&str`, `i64`), with `Self` replaced.
    pub param: Type,
    /// What the manager decodes: the parameter's type, or for a borrowed
    /// parameter the owned type whose encoding it shares (`&str` is sent
    /// as a `String`, `&[T]` as a `Vec<T>`, `&T` as a `T`).
    pub ty: WireType,
    /// How the manager hands the decoded value to the method.
    pub lend: Lend,
    /// The type in the interface's signature: the owned type, as a user
    /// would write it (`String` for `&str`).
    pub signature: String,
}

/// How an argument the manager decoded reaches the method.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Lend {
    /// By value: the parameter is the owned type.
    Value,
    /// `&value`: the parameter is `&T`.
    Ref,
    /// `&value[..]`: the parameter is `&str` (from a `String`) or `&[T]`
    /// (from a `Vec<T>`).
    Slice,
}

pub struct Method {
    pub ident: Ident,
    pub receiver: Receiver,
    /// Takes `ctx: &Context` first after `self`; the manager supplies it.
    pub takes_ctx: bool,
    pub args: Vec<Arg>,
    /// `None` for `()`.
    pub output: Option<WireType>,
    /// The attributes the proxy's method carries too: docs, deprecation.
    pub attrs: Vec<Attribute>,
}

pub struct Constructor {
    pub ident: Ident,
    /// Takes `ctx: &Context` first; the manager supplies it.
    pub takes_ctx: bool,
    pub args: Vec<Arg>,
    /// The proxy constructor's `&Client` parameter: `client`, unless an
    /// argument already has that name.
    pub client: Ident,
    pub attrs: Vec<Attribute>,
}

impl SharedItem {
    pub fn from_syn(item: &Item) -> syn::Result<SharedItem> {
        let mut errors = Errors::default();
        let model = match Input::from_syn(item)? {
            Input::Type(t) => Some(SharedItem::Type(SharedType::from_input(&t, &mut errors))),
            Input::Impl(b) => SharedImpl::from_input(&b, &mut errors).map(SharedItem::Impl),
        };
        errors.finish(model)
    }
}

impl SharedType {
    fn from_input(t: &TypeItem<'_>, errors: &mut Errors) -> SharedType {
        check::type_generics(t.generics, errors);
        SharedType {
            item: t.item.clone(),
            ident: t.ident.clone(),
            vis: t.vis.clone(),
        }
    }
}

impl SharedImpl {
    fn from_input(block: &ImplBlock<'_>, errors: &mut Errors) -> Option<SharedImpl> {
        let self_ty = check::impl_header(block, errors)?;
        let mut methods = Vec::new();
        let mut constructors = Vec::new();
        for f in &block.exposed {
            check::exposed_fn(f.func, errors);
            match f.receiver {
                Some(r) => {
                    let receiver = check::receiver(r, self_ty, errors);
                    let args = args(f, self_ty, errors);
                    let output = match &f.func.sig.output {
                        ReturnType::Default => None,
                        ReturnType::Type(_, ty) if is_unit(ty) => None,
                        ReturnType::Type(_, ty) => {
                            check::return_type(ty, errors);
                            Some(WireType::new(ty, self_ty))
                        }
                    };
                    if let Some(receiver) = receiver {
                        methods.push(Method {
                            ident: f.func.sig.ident.clone(),
                            receiver,
                            takes_ctx: f.ctx.is_some(),
                            args,
                            output,
                            attrs: proxy_attrs(&f.func.attrs),
                        });
                    }
                }
                None => {
                    let args = args(f, self_ty, errors);
                    constructors.push(Constructor {
                        ident: f.func.sig.ident.clone(),
                        takes_ctx: f.ctx.is_some(),
                        client: unused_name("client", &args, Span::call_site()),
                        args,
                        attrs: proxy_attrs(&f.func.attrs),
                    });
                }
            }
        }
        Some(SharedImpl {
            item: block.item.clone(),
            self_ty: self_ty.clone(),
            impl_span: block.item.impl_token.span,
            methods,
            constructors,
        })
    }
}

impl Receiver {
    /// `&self` or `&mut self` (also written `self: &Self`, `self: &Counter`);
    /// `None` for `self` by value or through another pointer.
    pub fn of(r: &syn::Receiver, self_ty: &Ident) -> Option<Receiver> {
        match &*r.ty {
            Type::Reference(t) if parse::is_self_type(&t.elem, Some(self_ty)) => {
                Some(match t.mutability {
                    Some(_) => Receiver::Mut,
                    None => Receiver::Ref,
                })
            }
            _ => None,
        }
    }
}

impl WireType {
    fn new(ty: &Type, self_ty: &Ident) -> WireType {
        WireType::owned(replace_self(ty, self_ty))
    }

    fn owned(ty: Type) -> WireType {
        WireType {
            bytes: is_byte_vec(&ty),
            ty,
        }
    }
}

impl Arg {
    fn new(ident: Ident, ty: &Type, self_ty: &Ident) -> Arg {
        let param = replace_self(ty, self_ty);
        let (owned, lend, signature) = match parse::peel(&param) {
            // `check` refuses every other reference.
            Type::Reference(r) if r.mutability.is_none() => {
                let span = r.elem.span();
                match parse::peel(&r.elem) {
                    Type::Path(p) if p.qself.is_none() && p.path.is_ident("str") => (
                        syn::parse_quote_spanned!(span=> ::std::string::String),
                        Lend::Slice,
                        "String".to_owned(),
                    ),
                    Type::Slice(s) => {
                        let elem = &s.elem;
                        (
                            syn::parse_quote_spanned!(span=> ::std::vec::Vec<#elem>),
                            Lend::Slice,
                            format!("Vec < {} >", type_text(elem)),
                        )
                    }
                    elem => (elem.clone(), Lend::Ref, type_text(elem)),
                }
            }
            _ => (param.clone(), Lend::Value, type_text(&param)),
        };
        Arg {
            ident,
            param,
            ty: WireType::owned(owned),
            lend,
            signature,
        }
    }
}

/// A type as the signatures in the fingerprint spell it.
pub fn type_text(ty: &Type) -> String {
    quote::ToTokens::to_token_stream(ty).to_string()
}

/// Names as the wire and the fingerprint know them: without `r#`.
pub fn name(ident: &Ident) -> String {
    ident.unraw().to_string()
}

/// The arguments of `f` that the caller passes, each checked.
fn args(f: &ExposedFn<'_>, self_ty: &Ident, errors: &mut Errors) -> Vec<Arg> {
    let named: Vec<String> = f
        .args
        .iter()
        .filter_map(|a| plain_name(a).map(name))
        .collect();
    let mut args: Vec<Arg> = Vec::with_capacity(f.args.len());
    for (i, a) in f.args.iter().enumerate() {
        check::arg_type(&a.ty, errors);
        let ident = match plain_name(a) {
            Some(ident) => ident.clone(),
            None => {
                // `_` or a destructuring pattern: the proxy needs a name to
                // pass on; pick one no other parameter has.
                let mut fresh = format!("arg{i}");
                while named.contains(&fresh) || args.iter().any(|b| name(&b.ident) == fresh) {
                    fresh.push('_');
                }
                Ident::new(&fresh, a.pat.span())
            }
        };
        args.push(Arg::new(ident, &a.ty, self_ty));
    }
    args
}

fn plain_name(arg: &PatType) -> Option<&Ident> {
    match &*arg.pat {
        Pat::Ident(p) if p.subpat.is_none() => Some(&p.ident),
        _ => None,
    }
}

/// `base`, or `_base`, `__base`... whichever no argument is named.
fn unused_name(base: &str, args: &[Arg], span: Span) -> Ident {
    let mut candidate = base.to_owned();
    while args.iter().any(|a| name(&a.ident) == candidate) {
        candidate.insert(0, '_');
    }
    Ident::new(&candidate, span)
}

/// The user's attributes that belong on the proxy's method as well.
fn proxy_attrs(attrs: &[Attribute]) -> Vec<Attribute> {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("doc") || a.path().is_ident("deprecated"))
        .cloned()
        .collect()
}

/// `ty` with every `Self` replaced by `self_ty`, keeping the span of `Self`.
fn replace_self(ty: &Type, self_ty: &Ident) -> Type {
    fn walk(tokens: TokenStream, self_ty: &Ident) -> TokenStream {
        tokens
            .into_iter()
            .map(|tt| match tt {
                TokenTree::Ident(i) if i == "Self" => {
                    let mut replaced = self_ty.clone();
                    replaced.set_span(i.span());
                    TokenTree::Ident(replaced)
                }
                TokenTree::Group(g) => {
                    let mut replaced =
                        proc_macro2::Group::new(g.delimiter(), walk(g.stream(), self_ty));
                    replaced.set_span(g.span());
                    TokenTree::Group(replaced)
                }
                other => other,
            })
            .collect()
    }
    let tokens = walk(quote::ToTokens::to_token_stream(ty), self_ty);
    // Replacing one name by another keeps a type a type; should it ever not,
    // the type as written is the better thing to show the compiler.
    syn::parse2(tokens).unwrap_or_else(|_| ty.clone())
}

/// Whether `ty` is `()`, which a method without a return type returns too.
fn is_unit(ty: &Type) -> bool {
    match ty {
        Type::Tuple(t) => t.elems.is_empty(),
        Type::Paren(p) => is_unit(&p.elem),
        _ => false,
    }
}

/// Whether `ty` is `Vec<u8>`.
fn is_byte_vec(ty: &Type) -> bool {
    let Type::Path(p) = ty else {
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
        && matches!(
            args.args.first(),
            Some(syn::GenericArgument::Type(Type::Path(u))) if u.path.is_ident("u8")
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::ToTokens;
    use syn::parse_quote;

    fn model(item: Item) -> SharedImpl {
        match SharedItem::from_syn(&item) {
            Ok(SharedItem::Impl(m)) => m,
            Ok(SharedItem::Type(_)) => panic!("an impl block"),
            Err(e) => panic!("refused: {e}"),
        }
    }

    fn refusals(item: Item) -> Vec<String> {
        match SharedItem::from_syn(&item) {
            Ok(_) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    fn text(ty: &Type) -> String {
        ty.to_token_stream().to_string()
    }

    #[test]
    fn methods_and_constructors_are_numbered_apart_in_source_order() {
        let m = model(parse_quote! {
            impl Counter {
                pub fn new(start: i64) -> Self { Counter { value: start } }
                pub fn incr(&mut self, by: i64) -> i64 { by }
                fn private(&self) {}
                pub fn zero() -> Counter { Counter { value: 0 } }
                pub fn get(&self) -> i64 { 0 }
                pub fn helper(x: i32) -> i32 { x }
            }
        });
        let methods: Vec<_> = m.methods.iter().map(|x| x.ident.to_string()).collect();
        let ctors: Vec<_> = m.constructors.iter().map(|x| x.ident.to_string()).collect();
        assert_eq!(methods, ["incr", "get"]);
        assert_eq!(ctors, ["new", "zero"]);
        assert_eq!(m.methods[0].receiver, Receiver::Mut);
        assert_eq!(m.methods[1].receiver, Receiver::Ref);
        assert!(m.methods[1].output.is_some());
    }

    #[test]
    fn the_context_is_not_an_argument() {
        let m = model(parse_quote! {
            impl T {
                pub fn who(&self, ctx: &manager::Context, x: u8) -> u64 { 0 }
                pub fn make(ctx: &Context) -> Self { T }
            }
        });
        assert!(m.methods[0].takes_ctx);
        assert_eq!(m.methods[0].args.len(), 1);
        assert!(m.constructors[0].takes_ctx);
        assert!(m.constructors[0].args.is_empty());
    }

    #[test]
    fn patterns_get_names_no_other_parameter_has() {
        let m = model(parse_quote! {
            impl T {
                pub fn f(&self, (a, b): (i32, i32), _: u8, arg0: u8, mut c: u8) {}
            }
        });
        let names: Vec<_> = m.methods[0]
            .args
            .iter()
            .map(|a| a.ident.to_string())
            .collect();
        assert_eq!(names, ["arg0_", "arg1", "arg0", "c"]);
    }

    #[test]
    fn self_in_a_wire_type_is_the_shared_type() {
        let m = model(parse_quote! {
            impl Node {
                pub fn merge(&mut self, other: Option<Self>) -> Vec<Self> { Vec::new() }
            }
        });
        assert_eq!(text(&m.methods[0].args[0].ty.ty), "Option < Node >");
        let out = m.methods[0].output.as_ref().map(|o| text(&o.ty));
        assert_eq!(out.as_deref(), Some("Vec < Node >"));
    }

    #[test]
    fn byte_vectors_are_marked() {
        let m = model(parse_quote! {
            impl T {
                pub fn f(&self, a: Vec<u8>, b: Vec<u16>, c: std::vec::Vec<u8>) -> Vec<u8> { a }
            }
        });
        let bytes: Vec<bool> = m.methods[0].args.iter().map(|a| a.ty.bytes).collect();
        assert_eq!(bytes, [true, false, true]);
        assert!(m.methods[0].output.as_ref().is_some_and(|o| o.bytes));
    }

    #[test]
    fn borrowed_arguments_are_decoded_owned_and_lent() {
        let m = model(parse_quote! {
            impl T {
                pub fn f(&self, a: &str, b: &[u32], c: &Point, d: &Self, e: u8, f: &[u8]) {}
                pub fn new(name: &str) -> Self { T }
            }
        });
        let args = &m.methods[0].args;
        let lend: Vec<Lend> = args.iter().map(|a| a.lend).collect();
        assert_eq!(
            lend,
            [
                Lend::Slice,
                Lend::Slice,
                Lend::Ref,
                Lend::Ref,
                Lend::Value,
                Lend::Slice
            ]
        );
        let owned: Vec<String> = args.iter().map(|a| text(&a.ty.ty)).collect();
        assert_eq!(
            owned,
            [
                ":: std :: string :: String",
                ":: std :: vec :: Vec < u32 >",
                "Point",
                "T",
                "u8",
                ":: std :: vec :: Vec < u8 >",
            ]
        );
        let params: Vec<String> = args.iter().map(|a| text(&a.param)).collect();
        assert_eq!(
            params,
            ["& str", "& [u32]", "& Point", "& T", "u8", "& [u8]"]
        );
        assert!(args[5].ty.bytes, "`&[u8]` travels as bytes");
        assert_eq!(m.constructors[0].args[0].lend, Lend::Slice);
    }

    #[test]
    fn a_borrowed_argument_signs_as_the_owned_type_it_is_sent_as() {
        let borrowed = model(parse_quote! {
            impl T { pub fn f(&self, a: &str, b: &[(u8, String)], c: &Point) {} }
        });
        let owned = model(parse_quote! {
            impl T { pub fn f(&self, a: String, b: Vec<(u8, String)>, c: Point) {} }
        });
        let sig = |m: &SharedImpl| -> Vec<String> {
            m.methods[0]
                .args
                .iter()
                .map(|a| a.signature.clone())
                .collect()
        };
        assert_eq!(sig(&borrowed), sig(&owned));
    }

    #[test]
    fn typed_receivers_are_read_like_the_short_forms() {
        let m = model(parse_quote! {
            impl T {
                pub fn a(self: &Self) {}
                pub fn b(self: &mut T) {}
            }
        });
        assert_eq!(m.methods[0].receiver, Receiver::Ref);
        assert_eq!(m.methods[1].receiver, Receiver::Mut);
    }

    #[test]
    fn a_client_argument_moves_the_generated_parameter_aside() {
        let m = model(parse_quote! {
            impl T { pub fn new(client: String) -> Self { T } }
        });
        assert_eq!(m.constructors[0].client.to_string(), "_client");
    }

    #[test]
    fn refusals_are_collected_not_stopped_at_the_first() {
        let got = refusals(parse_quote! {
            impl T {
                pub async fn a(&self) {}
                pub fn b(self) {}
                pub fn c(&self, s: &mut String) -> &str { s }
                pub fn deferred(&self) {}
                pub fn d<X>(x: X) -> Self { T }
            }
        });
        assert_eq!(got.len(), 6, "{got:#?}");
    }

    #[test]
    fn a_generic_impl_is_refused_once() {
        let got = refusals(parse_quote! { impl<T> Boxed<T> { pub fn get(&self) -> u8 { 0 } } });
        assert_eq!(got.len(), 1, "{got:#?}");
        let got = refusals(parse_quote! { impl Boxed<u8> {} });
        assert_eq!(got.len(), 1, "{got:#?}");
    }

    #[test]
    fn trait_impls_and_generic_types_are_refused() {
        assert_eq!(refusals(parse_quote! { impl Clone for T {} }).len(), 1);
        assert_eq!(refusals(parse_quote! { pub struct S<T>(T); }).len(), 1);
        assert_eq!(
            refusals(parse_quote! { pub enum E where u8: Copy { A } }).len(),
            1
        );
        assert!(refusals(parse_quote! { pub enum E { A, B(u8) } }).is_empty());
        assert!(refusals(parse_quote! { pub struct Unit; }).is_empty());
    }
}
