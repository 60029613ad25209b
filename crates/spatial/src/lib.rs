//! Geometry for the grid platform (the architecture guide's `geo` component, named `spatial` so
//! it does not clash with the `geo` crate it builds on): coordinate systems used in China
//! ([`coord`]), grid boundaries ([`shape`]) read from and written to GeoJSON ([`geojson`]),
//! geometry checks — invalid rings, overlaps and gaps between siblings ([`check`]) — and the
//! point → grid index ([`index`]).
//!
//! Architecture invariant: this crate does no IO; everything is a pure function of its input.

pub mod check;
pub mod coord;
pub mod geojson;
pub mod index;
pub mod shape;
pub mod synth;

pub use coord::{Crs, LonLat};
pub use index::GridIndex;
pub use shape::{BBox, Shape};
