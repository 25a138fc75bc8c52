//! The parts of the `rbdiff` CLI that other crates (the fuzz targets) call:
//! the store's metadata format and its validation.

pub mod meta;
