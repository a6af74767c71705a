//! Every refusal of `#[shared]`, as the user sees it: one case per file in
//! `tests/ui/`, with the compiler's output in the `.stderr` beside it.
//! Regenerate after an intended change with `TRYBUILD=overwrite cargo test --test ui`.

#[test]
fn refusals_are_spanned_and_readable() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
