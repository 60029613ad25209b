//! The kernel: the small, pure vocabulary every other Zhongshu crate speaks — the stable
//! error-code table, typed ids, the injectable clock, the working-day calendar, and paging/sorting conventions.
//!
//! Architecture invariant: this crate does no IO (no files, no network, no database).

pub mod cache;
pub mod calendar;
pub mod clock;
pub mod error;
pub mod ids;
pub mod paging;
pub mod text;

pub use calendar::WorkCalendar;
pub use clock::{Clock, FakeClock, SystemClock};
pub use error::{Error, ErrorCode, Result};
pub use paging::{Page, PageRequest, SortDir};
