//! The kernel: the small, pure vocabulary every other Zhongshu crate speaks — the stable
//! error-code table, typed ids, the injectable clock, and paging/sorting conventions.
//!
//! Architecture invariant: this crate does no IO (no files, no network, no database).

pub mod clock;
pub mod error;
pub mod ids;
pub mod paging;

pub use clock::{Clock, FakeClock, SystemClock};
pub use error::{Error, ErrorCode, Result};
pub use paging::{Page, PageRequest, SortDir};
