//! Placeholder: the cleanup-hook process tests land with the shutdown tests.
fn main() {}
