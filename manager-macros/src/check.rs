//! Every refusal of `#[shared]`: each a `syn::Error` spanned at the token that
//! is wrong, saying what is wrong and what to do instead, in one sentence.
//! The model calls these while it is built and collects every error into one,
//! so the user sees all of them at once.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::visit::Visit;
use syn::{Generics, ImplItemFn, Type};

use crate::model::Receiver;
use crate::parse::{self, ImplBlock};

/// Every refusal of one input, combined.
#[derive(Default)]
pub struct Errors(Option<syn::Error>);

impl Errors {
    pub fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn refuse(&mut self, tokens: impl ToTokens, message: &str) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// `value` if nothing was refused, else every refusal.
    pub fn finish<T>(self, value: Option<T>) -> syn::Result<T> {
        match (self.0, value) {
            (Some(errors), _) => Err(errors),
            (None, Some(value)) => Ok(value),
            // Every path that yields no value refuses something first; this
            // only keeps a mistake in the macro from going unreported.
            (None, None) => Err(syn::Error::new(
                proc_macro2::Span::call_site(),
                "#[shared] could not read this item; please report it as a bug of `manager`",
            )),
        }
    }
}

/// `#[shared]` itself takes nothing.
pub fn no_arguments(args: TokenStream) -> syn::Result<()> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(syn::Error::new_spanned(
            args,
            "#[shared] takes no arguments: write `#[shared]`",
        ))
    }
}

const GENERIC_TYPE: &str = "a shared type cannot be generic: the manager needs one concrete type, so declare a concrete type for each instantiation you need";

/// A shared struct or enum is one concrete type.
pub fn type_generics(generics: &Generics, errors: &mut Errors) {
    if let Some(tokens) = generics_tokens(generics) {
        errors.refuse(tokens, GENERIC_TYPE);
    }
}

/// The impl block is the type's own, for the type's plain name; returns that name.
pub fn impl_header<'a>(block: &ImplBlock<'a>, errors: &mut Errors) -> Option<&'a syn::Ident> {
    let item = block.item;
    if let Some((_, path, _)) = &item.trait_ {
        errors.refuse(
            path,
            "#[shared] goes on the type's inherent impl block, not on a trait impl: remove it here",
        );
        return None;
    }
    let impl_generics = generics_tokens(&item.generics);
    if let Some(tokens) = &impl_generics {
        errors.refuse(tokens, GENERIC_TYPE);
    }
    let Some(ident) = block.self_ident else {
        errors.refuse(
            &item.self_ty,
            "#[shared] goes on the impl block of a type named by its plain name, as in `impl Counter`",
        );
        return None;
    };
    if let Type::Path(p) = &*item.self_ty {
        let args = p.path.segments.last().map(|s| &s.arguments);
        // `impl<T> Boxed<T>` is refused once, at `<T>` after `impl`.
        if let Some(args) = args.filter(|a| !a.is_empty() && impl_generics.is_none()) {
            errors.refuse(args, GENERIC_TYPE);
        }
    }
    Some(ident)
}

/// Names the proxy already uses, and the trait each comes from.
const RESERVED: &[(&str, &str)] = &[
    ("deferred", "the proxy's view for pipelined calls"),
    ("to_token", "`manager::Proxy`"),
    ("from_token", "`manager::Proxy`"),
];

/// What a method or constructor may be, whatever its parameters.
pub fn exposed_fn(func: &ImplItemFn, errors: &mut Errors) {
    let sig = &func.sig;
    for attr in &func.attrs {
        if attr.path().is_ident("cfg") {
            errors.refuse(
                attr,
                "a shared method cannot be `#[cfg]`-gated, or client and manager could disagree on the interface: gate its body instead, or make it private",
            );
        }
    }
    if let Some(a) = &sig.asyncness {
        errors.refuse(
            a,
            "a shared method cannot be `async`: it runs on a manager thread, so make it a plain `fn` that blocks where it must wait",
        );
    }
    if let Some(u) = &sig.unsafety {
        errors.refuse(
            u,
            "a shared method cannot be `unsafe`: a remote caller cannot uphold its contract, so make it safe or private",
        );
    }
    if let Some(abi) = &sig.abi {
        errors.refuse(
            abi,
            "a shared method uses the Rust calling convention: remove the `extern`",
        );
    }
    if let Some(v) = &sig.variadic {
        errors.refuse(
            v,
            "a shared method cannot be variadic: give it a fixed list of parameters",
        );
    }
    if let Some(tokens) = generics_tokens(&sig.generics) {
        errors.refuse(
            tokens,
            "a shared method cannot be generic: the proxy needs one concrete signature, so use concrete types",
        );
    }
    let name = syn::ext::IdentExt::unraw(&sig.ident).to_string();
    if let Some((_, owner)) = RESERVED.iter().find(|(n, _)| *n == name) {
        errors.push(syn::Error::new_spanned(
            &sig.ident,
            format!(
                "a shared method cannot be named `{name}`: the proxy already has `{name}` from {owner}, so rename the method"
            ),
        ));
    }
}

/// A method's receiver is `&self` or `&mut self`.
pub fn receiver(r: &syn::Receiver, self_ty: &syn::Ident, errors: &mut Errors) -> Option<Receiver> {
    let receiver = Receiver::of(r, self_ty);
    if receiver.is_none() {
        errors.refuse(
            r,
            "a shared method takes `&self` or `&mut self`: the object stays in the manager, so it cannot be taken by value or through another pointer",
        );
    }
    receiver
}

const MISPLACED_CONTEXT: &str = "the manager supplies `&Context` only as the first parameter after `self` (the first of a constructor): move it there, as `ctx: &Context`";

/// An argument's type: a value, or a shared borrow of one at its top level
/// (`&str`, `&[T]`, `&T`), which the manager decodes as an owned value and
/// lends to the method. Whether the value is serde is left to the compiler,
/// through the assertions the expansion spans at the type.
pub fn arg_type(ty: &Type, errors: &mut Errors) {
    let Type::Reference(r) = parse::peel(ty) else {
        Finder::new(errors, Role::Argument).visit_type(ty);
        return;
    };
    if parse::is_context_path(&r.elem) {
        errors.refuse(r, MISPLACED_CONTEXT);
    } else if r.mutability.is_some() {
        errors.refuse(
            r,
            "a shared method cannot take a `&mut` argument: the manager works on a copy the caller never sees, so take `&T` or a value and return what the method changed",
        );
    } else if r.lifetime.as_ref().is_some_and(|l| l.ident != "_") {
        errors.refuse(
            r,
            "a borrowed argument of a shared method cannot name a lifetime: the manager lends the value it decoded for the call only, so leave the lifetime out (`&str`, `&T`)",
        );
    } else if let Type::TraitObject(_) = parse::peel(&r.elem) {
        errors.refuse(
            r,
            "a shared method cannot borrow a trait object: the manager must decode an owned value to lend, so take a concrete serde type",
        );
    } else {
        Finder::new(errors, Role::Argument).visit_type(&r.elem);
    }
}

/// A result's type: owned, concrete and nameable.
pub fn return_type(ty: &Type, errors: &mut Errors) {
    Finder::new(errors, Role::Result).visit_type(ty);
}

/// Where a type is, for the refusal of a reference found in it.
#[derive(Clone, Copy)]
enum Role {
    /// Inside an argument's type, below any top-level `&`.
    Argument,
    Result,
}

/// Refuses references, `impl Trait` and `!` wherever they hide in a type.
struct Finder<'e> {
    errors: &'e mut Errors,
    role: Role,
}

impl<'e> Finder<'e> {
    fn new(errors: &'e mut Errors, role: Role) -> Self {
        Finder { errors, role }
    }
}

impl<'ast> Visit<'ast> for Finder<'_> {
    fn visit_type_reference(&mut self, r: &'ast syn::TypeReference) {
        let message = if parse::is_context_path(&r.elem) {
            MISPLACED_CONTEXT
        } else {
            match self.role {
                Role::Argument => "a shared method can borrow an argument only at its top level (`&str`, `&[T]`, `&T`): the manager decodes an owned value to lend, so use an owned type inside it (`String`, `Vec<T>`, ...)",
                Role::Result => "a shared method cannot return a reference: its result is sent to the caller, so return an owned value (`String`, `Vec<T>`, a clone, ...)",
            }
        };
        self.errors.refuse(r, message);
        // One refusal per reference; references inside it are the same mistake.
    }
    fn visit_type_impl_trait(&mut self, i: &'ast syn::TypeImplTrait) {
        self.errors.refuse(
            i,
            "a shared method cannot take or return `impl Trait`: name one concrete serde type",
        );
    }
    fn visit_type_never(&mut self, n: &'ast syn::TypeNever) {
        self.errors.refuse(
            n,
            "a shared method cannot return `!`: every proxy call returns a `manager::Result`, so return `()`",
        );
    }
}

/// The tokens to point at when `generics` declares anything: the parameters,
/// else the `where` clause.
fn generics_tokens(generics: &Generics) -> Option<TokenStream> {
    if !generics.params.is_empty() {
        Some(generics.to_token_stream())
    } else {
        generics
            .where_clause
            .as_ref()
            .map(ToTokens::to_token_stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn messages(errors: Errors) -> Vec<String> {
        match errors.finish(Some(())) {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn every_refusal_of_a_signature_is_collected() {
        let f: ImplItemFn = parse_quote! {
            #[cfg(unix)]
            pub async unsafe extern "C" fn deferred<T>(&self) {}
        };
        let mut errors = Errors::default();
        exposed_fn(&f, &mut errors);
        let got = messages(errors);
        assert_eq!(got.len(), 6, "{got:#?}");
        assert!(got[0].contains("`#[cfg]`"));
        assert!(got[5].contains("named `deferred`"));
    }

    #[test]
    fn a_where_clause_alone_is_generic() {
        let f: ImplItemFn = parse_quote! { pub fn f(&self) where Self: Sized {} };
        let mut errors = Errors::default();
        exposed_fn(&f, &mut errors);
        assert_eq!(messages(errors).len(), 1);
    }

    fn arg_refusals(ty: TokenStream) -> Vec<String> {
        let ty: Type = syn::parse2(ty).expect("a type");
        let mut errors = Errors::default();
        arg_type(&ty, &mut errors);
        messages(errors)
    }

    fn return_refusals(ty: TokenStream) -> Vec<String> {
        let ty: Type = syn::parse2(ty).expect("a type");
        let mut errors = Errors::default();
        return_type(&ty, &mut errors);
        messages(errors)
    }

    #[test]
    fn shared_borrows_at_the_top_of_an_argument_are_accepted() {
        for ty in [
            quote::quote!(&str),
            quote::quote!(&[u32]),
            quote::quote!(&Point),
            quote::quote!(&Vec<(String, u8)>),
            quote::quote!(&'_ str),
            quote::quote!((&str)),
            quote::quote!(Result<Vec<(String, u8)>, String>),
        ] {
            assert!(arg_refusals(ty.clone()).is_empty(), "{ty}");
        }
    }

    #[test]
    fn other_references_in_arguments_are_refused_once_each() {
        for (ty, says) in [
            (quote::quote!(&mut String), "`&mut`"),
            (quote::quote!(&mut [u8]), "`&mut`"),
            (quote::quote!(&'static str), "lifetime"),
            (quote::quote!(&'a [u8]), "lifetime"),
            (quote::quote!(&&str), "top level"),
            (quote::quote!(Option<&str>), "top level"),
            (quote::quote!(&Vec<&'static str>), "top level"),
            (quote::quote!(Vec<&'static str>), "top level"),
            (quote::quote!(&dyn std::fmt::Debug), "trait object"),
            (quote::quote!(impl Iterator<Item = u8>), "`impl Trait`"),
            (quote::quote!(&Context), "`&Context`"),
            (quote::quote!(&mut Context), "`&Context`"),
        ] {
            let got = arg_refusals(ty.clone());
            assert_eq!(got.len(), 1, "{ty}: {got:#?}");
            assert!(got[0].contains(says), "{ty}: {}", got[0]);
        }
    }

    #[test]
    fn references_in_results_are_refused_wherever_they_hide() {
        for ty in [
            quote::quote!(&str),
            quote::quote!(Vec<&'static str>),
            quote::quote!(Option<(u8, &[u8])>),
        ] {
            let got = return_refusals(ty.clone());
            assert_eq!(got.len(), 1, "{ty}");
            assert!(got[0].contains("cannot return a reference"), "{}", got[0]);
        }
        assert!(return_refusals(quote::quote!(Result<Vec<(String, u8)>, String>)).is_empty());
    }

    #[test]
    fn a_misplaced_context_says_where_it_goes() {
        assert!(arg_refusals(quote::quote!(&manager::Context))[0]
            .contains("first parameter after `self`"));
        assert!(return_refusals(quote::quote!(Option<&Context>))[0]
            .contains("first parameter after `self`"));
    }

    #[test]
    fn receivers_other_than_borrows_are_refused() {
        let f: ImplItemFn = parse_quote! { fn f(self: Box<Self>) {} };
        let Some(syn::FnArg::Receiver(r)) = f.sig.inputs.first() else {
            panic!("a receiver");
        };
        let mut errors = Errors::default();
        let self_ty: syn::Ident = parse_quote!(T);
        assert!(receiver(r, &self_ty, &mut errors).is_none());
        assert_eq!(messages(errors).len(), 1);
    }

    #[test]
    fn arguments_to_the_attribute_are_refused() {
        assert!(no_arguments(TokenStream::new()).is_ok());
        assert!(no_arguments(quote::quote!(name = "x")).is_err());
    }
}
