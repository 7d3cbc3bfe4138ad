//! Image files and their A1111-compatible `parameters` metadata.
//!
//! - [`parameters`]: the A1111 "infotext" (`Steps: 20, Sampler: …`) writer and parser.
//! - [`png`]: PNGs carrying that text in a `parameters` text chunk.
//! - [`picture`]: reading any picture a user hands us, bounded.
//! - [`styles`]: A1111's `styles.csv` prompt styles.

pub mod parameters;
pub mod picture;
pub mod png;
pub mod styles;
