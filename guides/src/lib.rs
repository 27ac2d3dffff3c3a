//! cartd's guides as compiled code. Each guide under `docs/` is included here
//! as a module's documentation, so `cargo test` runs its Rust blocks as doc
//! tests against the dependencies a client crate would declare (this crate's
//! dev-dependencies), and the guide cannot drift from the code.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[doc = include_str!("../../docs/testing-with-fakes.md")]
pub mod testing_with_fakes {}

#[cfg(test)]
mod tests {
    /// The dependency lines of the guide's first ```toml block.
    fn guide_dependencies() -> Vec<(String, String)> {
        let guide = include_str!("../../docs/testing-with-fakes.md");
        let block = guide.split("```toml\n").nth(1).expect("the guide has a toml block");
        let block = block.split("```").next().expect("the block ends");
        dependency_lines(block)
    }

    /// `name = spec` lines, with any `path = "…"` left out of the spec (the
    /// guide points at a checkout of cartd, this crate at its own workspace).
    fn dependency_lines(toml: &str) -> Vec<(String, String)> {
        toml.lines()
            .filter_map(|l| l.split_once(" = "))
            .filter(|(name, _)| !name.starts_with('[') && !name.starts_with('#'))
            .map(|(name, spec)| {
                let spec = spec
                    .split(", ")
                    .filter(|part| !part.trim_start_matches("{ ").starts_with("path = "))
                    .collect::<Vec<_>>()
                    .join(", ");
                (name.trim().to_owned(), spec)
            })
            .collect()
    }

    #[test]
    fn section_one_names_the_dependencies_this_crate_builds_with() {
        let manifest = include_str!("../Cargo.toml");
        let ours = manifest.split("[dev-dependencies]\n").nth(1).expect("a dev-dependencies table");
        let ours = ours.split("\n[").next().expect("the table ends");
        let guide = guide_dependencies();
        assert!(guide.iter().any(|(name, _)| name == "cartd-adapters"), "{guide:?}");
        assert_eq!(guide, dependency_lines(ours), "docs/testing-with-fakes.md section 1 and guides/Cargo.toml differ");
    }
}
