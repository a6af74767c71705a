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

#[cfg(test)]
mod tests {
    use quote::quote;

    /// Expands `input` the way the attribute would.
    fn expand(input: proc_macro2::TokenStream) -> String {
        let item: syn::Item = syn::parse2(input).expect("test input parses");
        let model = crate::model::SharedItem::from_syn(&item).expect("test input is accepted");
        let tokens = crate::expand::shared(&model, &item).expect("expansion succeeds");
        let file: syn::File = syn::parse2(tokens).expect("the expansion is valid Rust");
        prettyplease::unparse(&file)
    }

    /// The expansion of one small type, checked in so that a change to the
    /// generated code shows up in review. `UPDATE_SNAPSHOTS=1` rewrites it.
    #[test]
    fn expansion_of_a_small_type_matches_its_snapshot() {
        let ty = expand(quote! {
            pub struct Counter { value: i64 }
        });
        let imp = expand(quote! {
            impl Counter {
                /// Starts at `start`.
                pub fn new(start: i64) -> Self { Counter { value: start } }
                /// Adds `by`.
                pub fn incr(&mut self, by: i64) -> i64 { self.value += by; self.value }
                pub fn get(&self) -> i64 { self.value }
                fn private(&self) {}
            }
        });
        let got = format!("// #[shared] on the struct\n{ty}\n// #[shared] on the impl\n{imp}");
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/snapshots/counter.rs.txt"
        );
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(path, &got).expect("the snapshot is writable");
            return;
        }
        let want = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            got == want,
            "the expansion changed; review it and run with UPDATE_SNAPSHOTS=1\n{got}"
        );
    }

    #[test]
    fn refusals_are_collected_not_stopped_at_the_first() {
        let item: syn::Item = syn::parse_quote! {
            impl T {
                pub async fn a(&self) {}
                pub fn b(self) {}
                pub fn c(&self, s: &str) {}
            }
        };
        let Err(err) = crate::model::SharedItem::from_syn(&item) else {
            panic!("refused");
        };
        assert_eq!(err.into_iter().count(), 3);
    }

    #[test]
    fn fingerprints_see_every_signature() {
        let a = expand(quote! { impl T { pub fn f(&self, x: i64) -> i64 { x } } });
        let b = expand(quote! { impl T { pub fn f(&self, x: i32) -> i64 { 0 } } });
        assert!(a.contains("\"f(&self, i64) -> i64\""), "{a}");
        assert!(b.contains("\"f(&self, i32) -> i64\""), "{b}");
    }
}
