//! `opshub token create|list|revoke`, working on the database directly.

use clap::Subcommand;

use super::model::{NewToken, Scope};
use crate::cli::{Ctx, Table};
use crate::page::PageRequest;

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create a token and print it once (only its SHA-256 is stored).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = clap::value_parser!(String), default_value = "read")]
        scope: String,
    },
    /// List tokens (never their text).
    List,
    /// Revoke a token by id or name.
    Revoke { id_or_name: String },
}

pub async fn run(ctx: &Ctx, cmd: TokenCmd) -> anyhow::Result<()> {
    let db = ctx.db().await?;
    match cmd {
        TokenCmd::Create { name, scope } => {
            let scope: Scope = scope.parse().map_err(crate::cli::usage)?;
            let created = super::create(&db, NewToken { name, scope }).await?;
            if ctx.json {
                return ctx.print_json(&created);
            }
            println!("{}", created.token);
            eprintln!(
                "Token {:?} ({} scope) created with id {}. Store it now: it is not shown again.",
                created.record.name,
                created.record.scope.as_str(),
                created.record.id
            );
        }
        TokenCmd::List => {
            let page = super::list(
                &db,
                PageRequest {
                    limit: 1000,
                    after: None,
                },
            )
            .await?;
            if ctx.json {
                return ctx.print_json(&page.items);
            }
            let mut table = Table::new(&[
                "ID",
                "NAME",
                "SCOPE",
                "PREFIX",
                "CREATED",
                "LAST USED",
                "REVOKED",
            ]);
            for t in &page.items {
                table.row(vec![
                    t.id.clone(),
                    t.name.clone(),
                    t.scope.as_str().into(),
                    t.prefix.clone(),
                    t.created_at.clone(),
                    t.last_used_at.clone().unwrap_or_default(),
                    t.revoked_at.clone().unwrap_or_default(),
                ]);
            }
            table.print();
        }
        TokenCmd::Revoke { id_or_name } => {
            let auth = super::Authenticator::default();
            let t = super::revoke(&db, &auth, &id_or_name).await?;
            if ctx.json {
                return ctx.print_json(&t);
            }
            println!("revoked {} ({})", t.id, t.name);
        }
    }
    Ok(())
}
