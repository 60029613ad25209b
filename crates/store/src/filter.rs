//! A small builder for dynamic `WHERE` clauses with numbered placeholders, so list endpoints
//! never splice user input into SQL.

/// A bound value.
#[derive(Debug, Clone)]
pub enum Value {
    Text(String),
    Int(i64),
    Real(f64),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<f64> for Value {
    fn from(r: f64) -> Self {
        Value::Real(r)
    }
}

pub type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Conditions joined with AND. Write each condition with `?` for its values, in order.
#[derive(Debug, Clone, Default)]
pub struct Where {
    conds: Vec<String>,
    binds: Vec<Value>,
    /// Placeholders by position for this backend (`?` on SQLite) instead of numbered.
    in_order: Option<crate::Backend>,
}

impl Where {
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder for a statement whose values appear in its text in the order they are bound
    /// and that has no placeholders of its own: `?` on SQLite, which binds by position (a large
    /// statement of `$n` costs O(n²) to bind there, see [`crate::Backend::values`]).
    pub fn in_order(backend: crate::Backend) -> Self {
        Self { in_order: Some(backend), ..Self::default() }
    }

    /// Adds a condition such as `"(a = ? OR b = ?)"` with its values.
    pub fn and(&mut self, sql: &str, values: impl IntoIterator<Item = Value>) -> &mut Self {
        let cond = self.fragment(sql, values);
        self.conds.push(cond);
        self
    }

    /// Numbers the `?` of a piece of SQL after the values bound so far and keeps its values, for
    /// statements that are not one `WHERE` (the subqueries of a `UNION ALL`); [`Where::bind`]
    /// binds them all.
    pub fn fragment(&mut self, sql: &str, values: impl IntoIterator<Item = Value>) -> String {
        let mut out = String::with_capacity(sql.len() + 8);
        let mut values = values.into_iter();
        for ch in sql.chars() {
            if ch == '?' {
                self.binds.push(values.next().expect("one value per placeholder"));
                match self.in_order {
                    Some(b) => out.push_str(&b.mark(self.binds.len())),
                    None => out.push_str(&format!("${}", self.binds.len())),
                }
            } else {
                out.push(ch);
            }
        }
        out
    }

    /// Adds a condition with no values (a fixed SQL fragment from the program, never input).
    pub fn and_sql(&mut self, sql: &str) -> &mut Self {
        self.conds.push(sql.to_string());
        self
    }

    /// `WHERE …` or the empty string.
    pub fn clause(&self) -> String {
        if self.conds.is_empty() { String::new() } else { format!("WHERE {}", self.conds.join(" AND ")) }
    }

    /// The number of values bound so far (the next placeholder is `$len+1`).
    pub fn len(&self) -> usize {
        self.binds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conds.is_empty()
    }

    /// Binds every value, in order.
    pub fn bind<'q>(&self, mut q: AnyQuery<'q>) -> AnyQuery<'q> {
        for v in &self.binds {
            q = match v {
                Value::Text(s) => q.bind(s.clone()),
                Value::Int(i) => q.bind(*i),
                Value::Real(r) => q.bind(*r),
            };
        }
        q
    }
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
pub fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One page of a filtered listing: `SELECT COUNT(*) {from} {where}` for the total, then
/// `SELECT {columns} {from} {where} ORDER BY {order} LIMIT … OFFSET …`, both on the read pool.
/// `from` and `order` are fixed SQL from the program (never input); `order` should end with a
/// unique column so pages are stable.
pub async fn fetch_page(
    db: &crate::Db,
    w: &Where,
    columns: &str,
    from: &str,
    order: &str,
    page: kernel::PageRequest,
) -> Result<(Vec<sqlx::any::AnyRow>, i64), kernel::Error> {
    use crate::DbResultExt;
    use sqlx::Row;
    let n = w.len();
    let sql = format!("SELECT {columns} {from} {} ORDER BY {order} LIMIT ${} OFFSET ${}", w.clause(), n + 1, n + 2);
    let rows = w
        .bind(sqlx::query(sqlx::AssertSqlSafe(sql)))
        .bind(page.limit())
        .bind(page.offset())
        .fetch_all(db.reader())
        .await
        .db()?;
    // A page that is not full tells the total by itself (a search or an inbox usually fits on
    // its first page): count only when there may be more, or when the page lies past the end.
    let short = (rows.len() as i64) < page.limit();
    let total = if short && (page.offset() == 0 || !rows.is_empty()) {
        page.offset() + rows.len() as i64
    } else {
        let count = format!("SELECT COUNT(*) {from} {}", w.clause());
        w.bind(sqlx::query(sqlx::AssertSqlSafe(count))).fetch_one(db.reader()).await.db()?.get(0)
    };
    Ok((rows, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_placeholders_across_conditions() {
        let mut w = Where::new();
        w.and("(a = ? OR b = ?)", ["x".into(), "y".into()]).and("c >= ?", [Value::Int(3)]);
        assert_eq!(w.clause(), "WHERE (a = $1 OR b = $2) AND c >= $3");
        assert_eq!(w.len(), 3);
        assert_eq!(like_escape("50%_a\\"), "50\\%\\_a\\\\");
    }

    #[test]
    fn in_order_placeholders_are_positional_on_sqlite_and_numbered_on_postgres() {
        for (backend, want) in
            [(crate::Backend::Sqlite, "a = ? AND b IN (?, ?)"), (crate::Backend::Postgres, "a = $1 AND b IN ($2, $3)")]
        {
            let mut w = Where::in_order(backend);
            let sql = w.fragment("a = ? AND b IN (?, ?)", [Value::Int(1), Value::Int(2), Value::Int(3)]);
            assert_eq!(sql, want);
            assert_eq!(w.len(), 3);
        }
    }

    #[tokio::test]
    async fn a_page_tells_the_total_whether_or_not_it_had_to_count() {
        for backend in crate::testing::test_backends() {
            let t = crate::testing::TestDb::new(backend, &[]).await;
            sqlx::query("CREATE TABLE pages_t (n BIGINT NOT NULL)").execute(t.db.writer()).await.unwrap();
            for n in 0..45i64 {
                sqlx::query("INSERT INTO pages_t (n) VALUES ($1)").bind(n).execute(t.db.writer()).await.unwrap();
            }
            let total = |page: i64, size: i64, below: i64| {
                let db = t.db.clone();
                async move {
                    let mut w = Where::new();
                    w.and("n < ?", [Value::Int(below)]);
                    let p = kernel::PageRequest::new(Some(page), Some(size)).unwrap();
                    let (rows, total) = fetch_page(&db, &w, "n", "FROM pages_t", "n", p).await.unwrap();
                    (rows.len(), total)
                }
            };
            assert_eq!(total(1, 20, 100).await, (20, 45), "a full page counts");
            assert_eq!(total(3, 20, 100).await, (5, 45), "the last page knows");
            assert_eq!(total(4, 20, 100).await, (0, 45), "past the end counts");
            assert_eq!(total(1, 20, 3).await, (3, 3), "a short first page knows");
            assert_eq!(total(1, 20, 0).await, (0, 0));
            assert_eq!(total(2, 20, 40).await, (20, 40), "a full page at the end counts");
        }
    }
}
