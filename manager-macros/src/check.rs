//! Every refusal of `#[shared]`, each a spanned error saying what to do instead.

use syn::visit::Visit;
use syn::{Generics, Signature, Type};

/// Collects errors so the user sees all of them at once.
#[derive(Default)]
pub struct Errors(Option<syn::Error>);

impl Errors {
    pub fn push(&mut self, r: syn::Result<()>) {
        if let Err(e) = r {
            match &mut self.0 {
                Some(all) => all.combine(e),
                None => self.0 = Some(e),
            }
        }
    }

    pub fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

pub fn no_generics(g: &Generics) -> syn::Result<()> {
    if g.params.is_empty() && g.where_clause.is_none() {
        Ok(())
    } else {
        Err(syn::Error::new_spanned(
            g,
            "a shared type cannot be generic: the manager must know its concrete type; use a concrete type or a type alias per instantiation",
        ))
    }
}

pub fn signature(sig: &Signature) -> syn::Result<()> {
    let mut errors = Errors::default();
    if let Some(a) = &sig.asyncness {
        errors.push(Err(syn::Error::new_spanned(
            a,
            "shared methods cannot be `async`: they run on the manager's threads; block inside, or return a value the caller can wait on",
        )));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(Err(syn::Error::new_spanned(
            &sig.generics,
            "shared methods cannot be generic: the proxy needs one concrete signature; use concrete types",
        )));
    }
    if let Some(u) = &sig.unsafety {
        errors.push(Err(syn::Error::new_spanned(
            u,
            "shared methods cannot be `unsafe`: a remote caller cannot uphold its contract",
        )));
    }
    if let Some(abi) = &sig.abi {
        errors.push(Err(syn::Error::new_spanned(
            abi,
            "shared methods use the Rust ABI: remove the `extern`",
        )));
    }
    if let Some(v) = &sig.variadic {
        errors.push(Err(syn::Error::new_spanned(
            v,
            "shared methods cannot be variadic",
        )));
    }
    errors.finish()
}

/// Whether `ty` is `&Context` (or `&manager::Context`): the manager supplies it.
pub fn is_context(ty: &Type) -> bool {
    match ty {
        Type::Reference(r) if r.mutability.is_none() => match &*r.elem {
            Type::Path(p) => p
                .path
                .segments
                .last()
                .is_some_and(|s| s.ident == "Context" && s.arguments.is_empty()),
            _ => false,
        },
        _ => false,
    }
}

/// Refuses references anywhere in an argument or return type: values cross
/// the wire, borrows cannot.
pub fn no_references(ty: &Type) -> syn::Result<()> {
    struct Finder(Option<syn::Error>);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_type_reference(&mut self, r: &'ast syn::TypeReference) {
            if self.0.is_none() {
                self.0 = Some(syn::Error::new_spanned(
                    r,
                    "shared methods cannot take or return references: values cross process boundaries; use an owned type (String, Vec<T>, ...)",
                ));
            }
        }
        fn visit_type_impl_trait(&mut self, i: &'ast syn::TypeImplTrait) {
            if self.0.is_none() {
                self.0 = Some(syn::Error::new_spanned(
                    i,
                    "shared methods cannot use `impl Trait` in signatures: name a concrete serde type",
                ));
            }
        }
    }
    let mut f = Finder(None);
    f.visit_type(ty);
    f.0.map_or(Ok(()), Err)
}
