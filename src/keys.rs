//! Master-key rotation. Rotation is three steps for the operator: configure the new key as
//! `OPSHUB_MASTER_KEY` and the old one(s) in `OPSHUB_MASTER_KEY_PREVIOUS` on every instance
//! (new writes use the new key, old values stay readable), run `opshub keys rotate` (every
//! stored secret re-encrypted under the current key in ONE transaction), then drop the
//! previous key. Each module that stores secrets contributes its re-encryption here.

use clap::Subcommand;
use serde::Serialize;

use crate::app::AppState;
use crate::cli::{Ctx, Table};
use crate::crypto::MasterKey;

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Re-encrypt every stored secret under the current master key (one transaction)
    Rotate,
    /// Count stored secrets per master key id
    Status,
    /// Print a new random master key (base64 of 32 bytes)
    Generate,
}

/// What a rotation did, per place secrets are stored.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationReport {
    pub key_id: String,
    pub reencrypted: std::collections::BTreeMap<&'static str, usize>,
}

/// Re-encrypts every secret not under the current key; all or nothing.
pub async fn rotate(app: &AppState) -> anyhow::Result<RotationReport> {
    let mut tx = app.db.begin_write().await?;
    let mut report = RotationReport {
        key_id: app.keys.current_id().to_string(),
        ..Default::default()
    };
    for (place, n) in crate::kv::rotate_secrets(app, &mut tx).await? {
        report.reencrypted.insert(place, n);
    }
    report.reencrypted.insert(
        "webhooks",
        crate::webhooks::rotate_secrets(app, &mut tx).await?,
    );
    let sources = crate::webhook_log::rotate_secrets(&app.db, &app.keys, &mut tx).await?;
    report.reencrypted.insert("ingest sources", sources);
    tx.commit().await?;
    app.kv.cache.clear();
    Ok(report)
}

pub async fn run(ctx: &Ctx, cmd: KeysCmd) -> anyhow::Result<()> {
    match cmd {
        KeysCmd::Generate => {
            let (key, text) = MasterKey::generate();
            println!("{text}");
            eprintln!(
                "key id {}. Set it as OPSHUB_MASTER_KEY (and the old key in OPSHUB_MASTER_KEY_PREVIOUS), then run `opshub keys rotate`.",
                key.id()
            );
        }
        KeysCmd::Rotate => {
            let app = ctx.state().await?;
            let report = rotate(&app).await?;
            if ctx.json {
                return ctx.print_json(&report);
            }
            for (place, n) in &report.reencrypted {
                println!("{place}: {n} re-encrypted");
            }
            println!(
                "every secret is now under key {}; OPSHUB_MASTER_KEY_PREVIOUS can be removed",
                report.key_id
            );
        }
        KeysCmd::Status => {
            let app = ctx.state().await?;
            let counts = crate::kv::secret_key_ids(&app).await?;
            if ctx.json {
                return ctx.print_json(&counts);
            }
            let mut t = Table::new(&["PLACE", "KEY ID", "SECRETS", "CURRENT"]);
            for ((place, kid), n) in counts {
                let current = (kid == app.keys.current_id()).to_string();
                t.row(vec![place.to_string(), kid, n.to_string(), current]);
            }
            t.print();
        }
    }
    Ok(())
}
