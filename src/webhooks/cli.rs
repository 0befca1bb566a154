//! `opshub digest` and `opshub verify`: sign a payload the way opshub delivers it, or check
//! a received request, without a server.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;

use super::model::VerifyRequest;
use crate::cli::{Ctx, usage};

#[derive(Debug, Args)]
pub struct DigestArgs {
    /// The endpoint's secret (whsec_…)
    #[arg(long)]
    secret: String,
    /// The JSON payload to sign (the exact body a receiver gets)
    #[arg(long)]
    payload: String,
    /// Message id (default: a new one)
    #[arg(long)]
    id: Option<String>,
    /// Unix timestamp (default: now)
    #[arg(long)]
    timestamp: Option<i64>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[arg(long)]
    secret: String,
    /// A received header, NAME:VALUE (repeat for webhook-id, webhook-timestamp, webhook-signature)
    #[arg(long = "header", short = 'H', value_name = "NAME:VALUE")]
    headers: Vec<String>,
    /// The raw body as received
    #[arg(long, conflicts_with = "payload_file")]
    payload: Option<String>,
    /// Read the raw body from a file
    #[arg(long)]
    payload_file: Option<PathBuf>,
    /// Allowed clock difference in seconds
    #[arg(long, default_value_t = super::sign::DEFAULT_TOLERANCE_SECS)]
    tolerance: i64,
}

pub fn digest(ctx: &Ctx, a: DigestArgs) -> anyhow::Result<()> {
    let key =
        super::sign::parse_secret(&a.secret).map_err(|e| usage(format!("invalid secret: {e}")))?;
    let payload: serde_json::Value = serde_json::from_str(&a.payload)
        .map_err(|e| usage(format!("--payload is not JSON: {e}")))?;
    let d = super::digest(&[key], &payload, a.id, a.timestamp);
    if ctx.json {
        return ctx.print_json(&d);
    }
    println!("webhook-id: {}", d.headers.webhook_id);
    println!("webhook-timestamp: {}", d.headers.webhook_timestamp);
    println!("webhook-signature: {}", d.headers.webhook_signature);
    Ok(())
}

/// Exit 0 when valid, 4 (validation failed) when not.
pub fn verify(ctx: &Ctx, a: VerifyArgs) -> anyhow::Result<()> {
    let payload = match (a.payload, a.payload_file) {
        (Some(p), _) => p,
        (None, Some(f)) => std::fs::read_to_string(&f)
            .map_err(|e| usage(format!("cannot read {}: {e}", f.display())))?,
        (None, None) => return Err(usage("give --payload or --payload-file")),
    };
    let mut headers = BTreeMap::new();
    for h in &a.headers {
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| usage(format!("--header {h:?} is not NAME:VALUE")))?;
        headers.insert(k.trim().to_string(), v.trim().to_string());
    }
    let req = VerifyRequest {
        secret: a.secret,
        headers,
        payload,
        tolerance: Some(a.tolerance),
    };
    let result = super::verify(&req)?;
    if ctx.json {
        ctx.print_json(&result)?;
    } else if result.valid {
        println!("valid");
    } else {
        println!("invalid: {}", result.reason.clone().unwrap_or_default());
    }
    if result.valid {
        Ok(())
    } else {
        Err(crate::cli::Coded {
            exit: crate::error::exit::VALIDATION,
            message: "the signature is not valid".into(),
        }
        .into())
    }
}
