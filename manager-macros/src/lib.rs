//! `#[shared]`: turns a struct or enum and its inherent impl block into a
//! type served by a manager, with a typed client proxy.
//!
//! The entry point only parses, builds the model, and expands; every refusal
//! is a spanned `syn::Error` collected by `check`.

mod check;
mod expand;
mod model;

use proc_macro::TokenStream;

/// Shares a type through a manager. See the `manager` crate's docs.
#[proc_macro_attribute]
pub fn shared(args: TokenStream, item: TokenStream) -> TokenStream {
    let args = proc_macro2::TokenStream::from(args);
    let item = syn::parse_macro_input!(item as syn::Item);
    let result = if args.is_empty() {
        model::SharedItem::from_syn(&item).and_then(|m| expand::shared(&m, &item))
    } else {
        Err(syn::Error::new_spanned(
            args,
            "#[shared] takes no arguments: write `#[shared]`",
        ))
    };
    match result {
        Ok(tokens) => tokens.into(),
        Err(errors) => {
            let errors = errors.to_compile_error();
            // Keep the user's item, and for a refused impl block a stand-in
            // interface, so that one mistake does not cascade into errors
            // about a missing type or impl.
            let stand_in = expand::stand_in(&item);
            quote::quote!(#item #stand_in #errors).into()
        }
    }
}
