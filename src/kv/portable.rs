//! Export and import of a whole key space as one JSON document (`opshub-kv/1`). Secrets
//! travel as ciphertext (readable only where the same master keyring exists) or are left
//! out; never as plaintext. An import validates every entry first, reports a diff, and
//! applies all of it in one transaction or nothing.

use std::collections::BTreeMap;

use super::model::{EXPORT_FORMAT, Entry, ExportDoc, ExportEntry, ImportReport, Precondition};
use super::value::{TypedValue, ValueType};
use super::{Proposed, aad, store, view};
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};

/// Every live key under `prefix`; secrets as ciphertext, or omitted when `omit_secrets`.
pub async fn export(app: &AppState, prefix: &str, omit_secrets: bool) -> ApiResult<ExportDoc> {
    let mut entries = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let batch = store::list(&app.db, prefix, after.as_deref(), 1000).await?;
        for e in &batch {
            if e.value_type == ValueType::Secret && omit_secrets {
                continue;
            }
            entries.insert(e.key.clone(), export_entry(app, e)?);
        }
        match batch.last() {
            Some(last) if batch.len() == 1000 => after = Some(last.key.clone()),
            _ => break,
        }
    }
    Ok(ExportDoc {
        format: EXPORT_FORMAT.to_string(),
        entries,
    })
}

fn export_entry(app: &AppState, e: &Entry) -> ApiResult<ExportEntry> {
    let (value, ciphertext) = match e.value_type {
        ValueType::Secret => (None, e.secret_ct.clone()),
        _ => (Some(view(app, e, false)?.value), None),
    };
    Ok(ExportEntry {
        value_type: e.value_type,
        value,
        ciphertext,
        is_active: e.is_active,
        is_cached: e.is_cached,
        description: e.description.clone(),
    })
}

/// Applies `doc` (or, with `dry_run`, only reports what would change).
pub async fn import(
    app: &AppState,
    doc: ExportDoc,
    dry_run: bool,
    actor: &str,
) -> ApiResult<ImportReport> {
    if doc.format != EXPORT_FORMAT {
        return Err(ApiError::unprocessable(
            "invalid_document",
            format!("format must be {EXPORT_FORMAT:?}"),
        ));
    }
    let mut report = ImportReport {
        dry_run,
        ..ImportReport::default()
    };
    let mut changes = Vec::new();
    for (key, item) in doc.entries {
        match plan_entry(app, &key, item).await {
            Ok(None) => report.unchanged.push(key),
            Ok(Some((proposed, exists))) => {
                if exists {
                    report.updated.push(key.clone())
                } else {
                    report.created.push(key.clone())
                }
                changes.push((key, proposed));
            }
            Err(e) => {
                report.errors.insert(key, e.to_string());
            }
        }
    }
    if dry_run || !report.errors.is_empty() || changes.is_empty() {
        return Ok(report);
    }
    let mut tx = app.db.begin_write().await?;
    let mut written = Vec::new();
    for (key, proposed) in changes {
        let mut slot = Some(proposed);
        let entry = super::commit_in(
            app,
            &mut tx,
            &key,
            Precondition::None,
            "put",
            |_, revision, version| {
                let p = slot
                    .take()
                    .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("proposal used twice")))?;
                Ok(super::entry_from(app, &key, p, revision, version, actor))
            },
        )
        .await?;
        written.push(entry);
    }
    tx.commit().await?;
    for e in written {
        app.kv.changed(&e.key, e.revision);
    }
    Ok(report)
}

/// What importing one entry would write: `None` when the key already holds exactly this;
/// otherwise the proposal and whether the key exists.
async fn plan_entry(
    app: &AppState,
    key: &str,
    item: ExportEntry,
) -> ApiResult<Option<(Proposed, bool)>> {
    super::model::validate_key(key).map_err(|m| ApiError::unprocessable("invalid_key", m))?;
    super::model::validate_description(&Some(item.description.clone()))
        .map_err(|m| ApiError::unprocessable("invalid_description", m))?;
    let value = match (item.value_type, item.value, item.ciphertext) {
        (ValueType::Secret, None, Some(ct)) => {
            let plain = app.keys.decrypt(&ct, &aad(key)).map_err(|e| {
                ApiError::unprocessable(
                    "undecryptable_secret",
                    format!("the secret cannot be read with this server's keys: {e}"),
                )
            })?;
            TypedValue::Secret(
                String::from_utf8(plain)
                    .map_err(|_| ApiError::unprocessable("invalid_secret", "not UTF-8"))?,
            )
        }
        (ty, Some(v), None) => super::value::parse_json(ty, &v).map_err(super::type_mismatch)?,
        _ => {
            return Err(ApiError::unprocessable(
                "invalid_entry",
                "give `value` (or, for a secret, exactly one of `value` and `ciphertext`)",
            ));
        }
    };
    let proposed = Proposed {
        value,
        is_active: item.is_active,
        is_cached: item.is_cached,
        description: item.description,
    };
    let current = store::find(&app.db, app.db.pool(), key)
        .await?
        .filter(|e| !e.deleted);
    match &current {
        Some(c) if same(app, c, &proposed)? => Ok(None),
        _ => Ok(Some((proposed, current.is_some()))),
    }
}

fn same(app: &AppState, current: &Entry, p: &Proposed) -> ApiResult<bool> {
    let flags = current.is_active == p.is_active
        && current.is_cached == p.is_cached
        && current.description == p.description;
    let value = match &p.value {
        TypedValue::Secret(s) if current.value_type == ValueType::Secret => {
            app.keys.decrypt(
                current.secret_ct.as_deref().unwrap_or_default(),
                &aad(&current.key),
            )? == s.as_bytes()
        }
        TypedValue::Secret(_) => false,
        v => {
            current.value_type == v.value_type()
                && current.value.as_deref() == Some(v.to_storage().as_str())
        }
    };
    Ok(flags && value)
}
