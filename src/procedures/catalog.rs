//! Reading the user's routines, triggers and views back from the live catalog, set-based:
//! a few queries for every object at once, never one per object.
//! - PostgreSQL: one UNION of `pg_proc` (`pg_get_functiondef`, keyed by schema, name and
//!   `pg_get_function_identity_arguments`, so overloads stay apart), `pg_trigger` (not
//!   internal; `pg_get_triggerdef` plus the enabled state, keyed by schema, table, name)
//!   and views (`pg_get_viewdef`). opshub's schema, system schemas and extension-owned
//!   objects are left out. At deploy, the objects the script wrote are the catalog rows
//!   whose `xmin` is the deploy's own transaction id.
//! - MySQL/MariaDB: `information_schema.ROUTINES` + `PARAMETERS`, `TRIGGERS`, `VIEWS`,
//!   rendered into one text per object (`SHOW CREATE` would be a query per object).
//! - SQLite: `sqlite_master.sql` of triggers and views.
//!
//! Keys look like `function public.f(a integer)`, `trigger public.orders.audit`,
//! `view v`; on SQLite and MySQL names are lower-cased (their catalogs match names
//! case-insensitively).

use std::collections::{BTreeMap, HashMap};

use sqlx::{AnyConnection, AssertSqlSafe, Row};

use super::model::{Created, ProcType};
use crate::db::{Db, Dialect};

/// Live definitions by key.
pub type Live = HashMap<String, String>;

/// The definitions of a procedure's objects as one text, and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub keys: Vec<String>,
    pub text: String,
    pub hash: String,
}

/// `keys`' definitions from `live`, in key order; keys absent from `live` are returned
/// apart and contribute no text.
pub fn render(keys: &[String], live: &Live) -> (Rendered, Vec<String>) {
    let mut text = String::new();
    let mut missing = Vec::new();
    for k in keys {
        match live.get(k) {
            Some(def) => {
                text.push_str("-- ");
                text.push_str(k);
                text.push('\n');
                text.push_str(def.trim_end());
                text.push('\n');
            }
            None => missing.push(k.clone()),
        }
    }
    let hash = crate::crypto::sha256_hex(text.as_bytes());
    (
        Rendered {
            keys: keys.to_vec(),
            text,
            hash,
        },
        missing,
    )
}

/// The key of an object a script names (SQLite and MySQL, where names identify objects).
pub fn key_of(created: &Created) -> String {
    // A schema-qualified name (`db.p`) is looked up in the current database.
    let name = created.name.rsplit('.').next().unwrap_or(&created.name);
    format!("{} {}", created.kind.as_str(), name.to_lowercase())
}

/// Whether `key` names an object of type `ty`.
pub fn is_of(key: &str, ty: ProcType) -> bool {
    key.strip_prefix(ty.as_str())
        .is_some_and(|rest| rest.starts_with(' '))
}

/// Every user routine, trigger and view in the database now.
pub async fn live(db: &Db, conn: &mut AnyConnection) -> Result<Live, sqlx::Error> {
    match db.dialect() {
        Dialect::Postgres => pg(db, conn, false).await,
        Dialect::Mysql => mysql(conn).await,
        Dialect::Sqlite => sqlite(conn).await,
    }
}

/// PostgreSQL: the objects the current transaction created or replaced.
pub async fn written_here(db: &Db, conn: &mut AnyConnection) -> Result<Live, sqlx::Error> {
    pg(db, conn, true).await
}

fn pg_sql(only_this_transaction: bool) -> String {
    let schemas = "n.nspname NOT IN ('pg_catalog', 'information_schema', $1) \
                   AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'";
    let (routines, triggers, views) = if only_this_transaction {
        (
            "AND p.xmin = pg_current_xact_id()::xid",
            "AND t.xmin = pg_current_xact_id()::xid",
            "AND (c.xmin = pg_current_xact_id()::xid OR EXISTS (SELECT 1 FROM pg_rewrite r \
             WHERE r.ev_class = c.oid AND r.xmin = pg_current_xact_id()::xid))",
        )
    } else {
        ("", "", "")
    };
    format!(
        "SELECT (CASE p.prokind WHEN 'p' THEN 'procedure ' ELSE 'function ' END) || n.nspname
                || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')' AS k,
                pg_get_functiondef(p.oid) AS d
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE p.prokind IN ('f', 'p') AND {schemas} {routines}
           AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_proc'::regclass
                           AND e.objid = p.oid AND e.deptype = 'e')
         UNION ALL
         SELECT 'trigger ' || n.nspname || '.' || c.relname || '.' || t.tgname,
                pg_get_triggerdef(t.oid) || CASE t.tgenabled WHEN 'O' THEN ''
                    ELSE E'\\n-- enabled: ' || t.tgenabled::text END
         FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
              JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE NOT t.tgisinternal AND {schemas} {triggers}
         UNION ALL
         SELECT 'view ' || n.nspname || '.' || c.relname,
                'CREATE ' || CASE c.relkind WHEN 'm' THEN 'MATERIALIZED ' ELSE '' END
                    || 'VIEW ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname)
                    || E' AS\\n' || pg_get_viewdef(c.oid)
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('v', 'm') AND {schemas} {views}
           AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_class'::regclass
                           AND e.objid = c.oid AND e.deptype = 'e')"
    )
}

async fn pg(db: &Db, conn: &mut AnyConnection, only_here: bool) -> Result<Live, sqlx::Error> {
    let rows = sqlx::query(AssertSqlSafe(pg_sql(only_here)))
        .bind(db.pg_schema().to_string())
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get::<String, _>("k")?, r.try_get::<String, _>("d")?)))
        .collect()
}

async fn sqlite(conn: &mut AnyConnection) -> Result<Live, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT type || ' ' || lower(name) AS k, sql AS d FROM sqlite_master
         WHERE type IN ('trigger', 'view') AND sql IS NOT NULL",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get::<String, _>("k")?, r.try_get::<String, _>("d")?)))
        .collect()
}

/// MySQL/MariaDB: four set-based reads of `information_schema`, rendered per object.
/// Trigger `ACTION_ORDER` is left out: adding another trigger to a table renumbers it.
async fn mysql(conn: &mut AnyConnection) -> Result<Live, sqlx::Error> {
    let mut live = Live::new();
    let params = mysql_params(conn).await?;
    let routines = sqlx::query(
        "SELECT CAST(LOWER(ROUTINE_TYPE) AS CHAR) AS t, CAST(ROUTINE_NAME AS CHAR) AS n,
                CAST(COALESCE(DTD_IDENTIFIER, '') AS CHAR) AS r,
                CAST(COALESCE(ROUTINE_DEFINITION, '') AS CHAR) AS d,
                CAST(CONCAT_WS(' ', IF(IS_DETERMINISTIC = 'YES', 'DETERMINISTIC', 'NOT DETERMINISTIC'),
                     SQL_DATA_ACCESS, 'SQL SECURITY', SECURITY_TYPE) AS CHAR) AS c,
                CAST(SQL_MODE AS CHAR) AS m
         FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE()",
    )
    .fetch_all(&mut *conn)
    .await?;
    for r in &routines {
        let (ty, name): (String, String) = (r.try_get("t")?, r.try_get("n")?);
        let returns: String = r.try_get("r")?;
        let args = params
            .get(&(ty.clone(), name.clone()))
            .map(|p| p.join(", "))
            .unwrap_or_default();
        let returns = if ty == "function" {
            format!(" RETURNS {returns}")
        } else {
            String::new()
        };
        let def = format!(
            "CREATE {} `{name}`({args}){returns}\n{}\n-- sql_mode: {}\n{}",
            ty.to_uppercase(),
            r.try_get::<String, _>("c")?,
            r.try_get::<String, _>("m")?,
            r.try_get::<String, _>("d")?
        );
        live.insert(format!("{ty} {}", name.to_lowercase()), def);
    }
    let triggers = sqlx::query(
        "SELECT CAST(TRIGGER_NAME AS CHAR) AS n, CAST(ACTION_TIMING AS CHAR) AS tm,
                CAST(EVENT_MANIPULATION AS CHAR) AS ev, CAST(EVENT_OBJECT_TABLE AS CHAR) AS tb,
                CAST(ACTION_STATEMENT AS CHAR) AS d, CAST(SQL_MODE AS CHAR) AS m
         FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()",
    )
    .fetch_all(&mut *conn)
    .await?;
    for r in &triggers {
        let name: String = r.try_get("n")?;
        let def = format!(
            "CREATE TRIGGER `{name}` {} {} ON `{}` FOR EACH ROW\n-- sql_mode: {}\n{}",
            r.try_get::<String, _>("tm")?,
            r.try_get::<String, _>("ev")?,
            r.try_get::<String, _>("tb")?,
            r.try_get::<String, _>("m")?,
            r.try_get::<String, _>("d")?
        );
        live.insert(format!("trigger {}", name.to_lowercase()), def);
    }
    let views = sqlx::query(
        "SELECT CAST(TABLE_NAME AS CHAR) AS n, CAST(VIEW_DEFINITION AS CHAR) AS d,
                CAST(CONCAT_WS(' ', 'CHECK OPTION', CHECK_OPTION, 'SQL SECURITY', SECURITY_TYPE) AS CHAR) AS c
         FROM information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE()",
    )
    .fetch_all(&mut *conn)
    .await?;
    for r in &views {
        let name: String = r.try_get("n")?;
        let def = format!(
            "CREATE VIEW `{name}` AS\n{}\n-- {}",
            r.try_get::<String, _>("d")?,
            r.try_get::<String, _>("c")?
        );
        live.insert(format!("view {}", name.to_lowercase()), def);
    }
    Ok(live)
}

/// Parameters of every routine, `(type, name) -> ["IN a INT", …]` in declaration order.
async fn mysql_params(
    conn: &mut AnyConnection,
) -> Result<BTreeMap<(String, String), Vec<String>>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT CAST(LOWER(ROUTINE_TYPE) AS CHAR) AS t, CAST(SPECIFIC_NAME AS CHAR) AS n,
                CAST(CONCAT_WS(' ', PARAMETER_MODE, PARAMETER_NAME, DTD_IDENTIFIER) AS CHAR) AS p
         FROM information_schema.PARAMETERS
         WHERE SPECIFIC_SCHEMA = DATABASE() AND ORDINAL_POSITION > 0
         ORDER BY SPECIFIC_NAME, ORDINAL_POSITION",
    )
    .fetch_all(conn)
    .await?;
    let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for r in &rows {
        out.entry((r.try_get("t")?, r.try_get("n")?))
            .or_default()
            .push(r.try_get("p")?);
    }
    Ok(out)
}

/// SQLite/MySQL statements that drop the objects a script creates, run before it: SQLite
/// has no `CREATE OR REPLACE`, MySQL none for routines, so a redeploy replaces this way.
pub fn drops(dialect: Dialect, created: &[Created]) -> Vec<String> {
    if dialect == Dialect::Postgres {
        return Vec::new();
    }
    created
        .iter()
        .map(|c| {
            let name = c.name.rsplit('.').next().unwrap_or(&c.name);
            let quoted = match dialect {
                Dialect::Mysql => format!("`{}`", name.replace('`', "``")),
                _ => format!("\"{}\"", name.replace('"', "\"\"")),
            };
            format!("DROP {} IF EXISTS {quoted}", c.kind.as_str().to_uppercase())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_in_key_order_and_lists_missing_keys() {
        let live: Live = [(
            "view a".to_string(),
            "CREATE VIEW a AS SELECT 1\n".to_string(),
        )]
        .into_iter()
        .collect();
        let (r, missing) = render(&["view a".into(), "view b".into()], &live);
        assert_eq!(r.text, "-- view a\nCREATE VIEW a AS SELECT 1\n");
        assert_eq!(missing, ["view b"]);
        assert_eq!(r.hash.len(), 64);
    }

    #[test]
    fn keys_and_drops_use_the_unqualified_name() {
        let c = Created {
            kind: ProcType::Trigger,
            name: "main.Audit".into(),
        };
        assert_eq!(key_of(&c), "trigger audit");
        assert!(is_of("trigger audit", ProcType::Trigger));
        assert!(!is_of("triggers x", ProcType::Trigger));
        assert_eq!(
            drops(Dialect::Mysql, &[c]),
            ["DROP TRIGGER IF EXISTS `Audit`"]
        );
    }
}
