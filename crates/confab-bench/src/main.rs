//! confab-bench: load generator for Confab (work in progress).
fn main() {}
