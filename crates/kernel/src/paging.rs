//! Paging and sorting conventions, written down once.
//!
//! Lists take `page` (1-based, default 1) and `page_size` (default 20, at most
//! [`PageRequest::MAX_PAGE_SIZE`]); they answer `{items, total, page, page_size}`.
//! Sorting takes `sort=field` or `sort=-field` (descending); each list names its sortable fields.

use serde::{Deserialize, Serialize};

use crate::{Error, ErrorCode};

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub page: u32,
    pub page_size: u32,
}

impl PageRequest {
    pub const DEFAULT_PAGE_SIZE: u32 = 20;
    pub const MAX_PAGE_SIZE: u32 = 200;

    /// Validates raw query values; `None` takes the default.
    pub fn new(page: Option<i64>, page_size: Option<i64>) -> Result<Self, Error> {
        let page = page.unwrap_or(1);
        let page_size = page_size.unwrap_or(Self::DEFAULT_PAGE_SIZE as i64);
        if !(1..=1_000_000).contains(&page) {
            return Err(Error::new(ErrorCode::InvalidPage, "page must be between 1 and 1000000"));
        }
        if !(1..=Self::MAX_PAGE_SIZE as i64).contains(&page_size) {
            return Err(Error::new(
                ErrorCode::InvalidPage,
                format!("page_size must be between 1 and {}", Self::MAX_PAGE_SIZE),
            ));
        }
        Ok(PageRequest { page: page as u32, page_size: page_size as u32 })
    }

    pub fn limit(&self) -> i64 {
        self.page_size as i64
    }

    pub fn offset(&self) -> i64 {
        (self.page as i64 - 1) * self.page_size as i64
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest { page: 1, page_size: Self::DEFAULT_PAGE_SIZE }
    }
}

/// One page of a list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub page: u32,
    pub page_size: u32,
}

impl<T> Page<T> {
    pub fn new(items: Vec<T>, total: i64, req: PageRequest) -> Self {
        Page { items, total, page: req.page, page_size: req.page_size }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            total: self.total,
            page: self.page,
            page_size: self.page_size,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortDir {
    Asc,
    Desc,
}

impl SortDir {
    pub fn sql(self) -> &'static str {
        match self {
            SortDir::Asc => "ASC",
            SortDir::Desc => "DESC",
        }
    }
}

/// Parses `sort=field` / `sort=-field` against an allow-list of `(public name, SQL column)`.
/// Returns the SQL column, never the raw input, so the result is safe to splice into SQL.
pub fn parse_sort(
    raw: Option<&str>,
    allowed: &[(&str, &'static str)],
    default: (&'static str, SortDir),
) -> Result<(&'static str, SortDir), Error> {
    let Some(raw) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(default);
    };
    let (name, dir) = match raw.strip_prefix('-') {
        Some(rest) => (rest, SortDir::Desc),
        None => (raw.strip_prefix('+').unwrap_or(raw), SortDir::Asc),
    };
    allowed.iter().find(|(public, _)| *public == name).map(|(_, column)| (*column, dir)).ok_or_else(|| {
        let names: Vec<&str> = allowed.iter().map(|(p, _)| *p).collect();
        Error::new(ErrorCode::InvalidSort, format!("cannot sort by '{name}'; sortable fields: {}", names.join(", ")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_request_defaults_and_caps() {
        let p = PageRequest::new(None, None).unwrap();
        assert_eq!((p.page, p.page_size, p.offset()), (1, 20, 0));
        assert_eq!(PageRequest::new(Some(3), Some(50)).unwrap().offset(), 100);
        assert_eq!(PageRequest::new(Some(0), None).unwrap_err().code, ErrorCode::InvalidPage);
        assert_eq!(PageRequest::new(None, Some(201)).unwrap_err().code, ErrorCode::InvalidPage);
        assert_eq!(PageRequest::new(None, Some(-1)).unwrap_err().code, ErrorCode::InvalidPage);
    }

    #[test]
    fn sort_only_yields_allowed_columns() {
        let allowed = [("name", "u.display_name"), ("created_at", "u.created_at")];
        let d = ("u.created_at", SortDir::Desc);
        assert_eq!(parse_sort(Some("-name"), &allowed, d).unwrap(), ("u.display_name", SortDir::Desc));
        assert_eq!(parse_sort(None, &allowed, d).unwrap(), d);
        let err = parse_sort(Some("name; DROP TABLE users"), &allowed, d).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidSort);
    }
}
