//! `#[shared]`: turns a struct or enum and its inherent impl block into a
//! type served by a manager, with a typed client proxy. See the `manager`
//! crate's docs.
//!
//! The input is read (`parse`), judged and turned into a model (`model`,
//! with every refusal in `check`), and the model expanded (`expand`).

mod check;
mod expand;
mod model;
mod parse;

use proc_macro::TokenStream;

/// Defined in the `manager-macros` crate; use it as `manager::shared`, whose
/// documentation gives its rules and an example.
#[proc_macro_attribute]
pub fn shared(args: TokenStream, item: TokenStream) -> TokenStream {
    let item = syn::parse_macro_input!(item as syn::Item);
    let args = check::no_arguments(args.into()).err();
    match model::SharedItem::from_syn(&item) {
        Ok(model) => {
            // Arguments are a mistake of their own: expand anyway, so that
            // the one error is all the user sees.
            let expanded = expand::shared(&model);
            let args = args.map(|e| e.to_compile_error());
            quote::quote!(#expanded #args).into()
        }
        Err(errors) => {
            let errors = match args {
                Some(mut all) => {
                    all.combine(errors);
                    all
                }
                None => errors,
            };
            expand::refused(&item, errors).into()
        }
    }
}
