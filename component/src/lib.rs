//! The rbdiff codec as a WebAssembly component.
