//! README.md's "Calling from Rust" shows `examples/call.rs`, which cargo
//! compiles with the tests: the README's code compiles because it is the
//! example's.

#[test]
fn the_readme_shows_the_example_that_compiles() {
    let readme = include_str!("../../../README.md");
    let section = readme
        .split("## Calling from Rust")
        .nth(1)
        .expect("README.md has a \"Calling from Rust\" section");
    let shown = section
        .split("```rust\n")
        .nth(1)
        .and_then(|code| code.split("```").next())
        .expect("the section shows Rust code");
    let example = include_str!("../examples/call.rs");
    let body = example
        .split_once("\n\n")
        .map(|(_, body)| body)
        .expect("the example starts with its doc comment");
    assert_eq!(shown, body, "README.md and examples/call.rs differ");
}
