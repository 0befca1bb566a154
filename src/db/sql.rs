//! Rewrites opshub's portable SQL for one dialect: `?` placeholders become `$N` on
//! PostgreSQL, and `opshub_<table>` becomes `"<schema>".<table>` there. Text inside quotes
//! is left alone. Only opshub's own statements pass through here, never user scripts.

use super::Dialect;

pub(super) fn rewrite(sql: &str, dialect: Dialect, pg_schema: &str) -> String {
    if dialect != Dialect::Postgres {
        return sql.to_string();
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    let mut quote: Option<char> = None;
    let mut chars = sql.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if let Some(q) = quote {
            out.push(c);
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => {
                quote = Some(c);
                out.push(c);
            }
            '?' => {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            }
            'o' if starts_table(sql, i) => {
                out.push('"');
                out.push_str(pg_schema);
                out.push_str("\".");
                // Skip the rest of "opshub_" (the 'o' is consumed already).
                for _ in 0.."pshub_".len() {
                    chars.next();
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// `opshub_` at a word start (so `x_opshub_y` is not a table name).
fn starts_table(sql: &str, i: usize) -> bool {
    let before_ok = sql[..i]
        .chars()
        .next_back()
        .is_none_or(|p| !(p.is_ascii_alphanumeric() || p == '_'));
    before_ok && sql[i..].starts_with("opshub_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_placeholders_and_qualifies_tables_on_postgres() {
        let sql = "SELECT a FROM opshub_tokens WHERE b = ? AND c = '?' AND d = ?";
        assert_eq!(
            rewrite(sql, Dialect::Postgres, "opshub"),
            "SELECT a FROM \"opshub\".tokens WHERE b = $1 AND c = '?' AND d = $2"
        );
    }

    #[test]
    fn leaves_other_dialects_untouched() {
        let sql = "SELECT a FROM opshub_tokens WHERE b = ?";
        assert_eq!(rewrite(sql, Dialect::Sqlite, "x"), sql);
        assert_eq!(rewrite(sql, Dialect::Mysql, "x"), sql);
    }

    #[test]
    fn ignores_prefix_inside_identifiers() {
        let sql = "SELECT my_opshub_x FROM opshub_meta";
        assert_eq!(
            rewrite(sql, Dialect::Postgres, "ops"),
            "SELECT my_opshub_x FROM \"ops\".meta"
        );
    }
}
