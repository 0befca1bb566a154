//! Unit tests of the parent module.

use super::*;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn no_file() -> Flags {
    Flags {
        config_file: Some(PathBuf::from("/nonexistent/opshub.toml")),
        ..Flags::default()
    }
}

#[test]
fn flag_beats_env_beats_file_beats_default() {
    let dir = std::env::temp_dir().join(format!("opshub-cfg-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let file = dir.join("opshub.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:1\"\nlog = \"debug\"\ndb_pool_size = 3\n",
    )
    .expect("write");
    let mut flags = Flags {
        config_file: Some(file),
        ..Flags::default()
    };
    flags.values.insert("listen", "127.0.0.1:3".into());
    let e = env(&[("OPSHUB_LISTEN", "127.0.0.1:2"), ("OPSHUB_LOG", "warn")]);
    let c = Config::resolve(&flags, &e).expect("valid");
    assert_eq!(
        (c.listen.as_str(), c.sources["listen"]),
        ("127.0.0.1:3", Source::Flag)
    );
    assert_eq!((c.log.as_str(), c.sources["log"]), ("warn", Source::Env));
    assert_eq!(
        (c.db_pool_size, c.sources["db_pool_size"]),
        (3, Source::File)
    );
    assert_eq!(c.sources["pg_schema"], Source::Default);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn warns_about_unknown_opshub_variables() {
    let c = Config::resolve(&Flags::default(), &env(&[("OPSHUB_LISTN", "x")])).expect("valid");
    assert!(c.warnings.iter().any(|w| w.contains("OPSHUB_LISTN")));
}

#[test]
fn masks_secrets_and_url_passwords() {
    let e = env(&[
        ("OPSHUB_MASTER_KEY", "c2VjcmV0"),
        ("OPSHUB_ADMIN_TOKEN", "opshub_abc"),
        ("OPSHUB_DATABASE_URL", "postgres://u:pw@h/db"),
    ]);
    let c = Config::resolve(&no_file(), &e);
    assert!(c.is_err(), "a named but missing config file is an error");
    let c = Config::resolve(&Flags::default(), &e).expect("valid");
    let shown = format!("{:?}", c.display_rows());
    assert!(!shown.contains("c2VjcmV0") && !shown.contains("opshub_abc") && !shown.contains("pw@"));
    assert!(shown.contains("********"));
}

#[test]
fn rejects_bad_values_naming_the_setting() {
    for (k, v) in [
        ("OPSHUB_DATABASE_URL", "redis://x"),
        ("OPSHUB_LISTEN", "nowhere"),
        ("OPSHUB_MAX_BODY_BYTES", "-1"),
        ("OPSHUB_PG_SCHEMA", "x\"; drop"),
        ("OPSHUB_LOG_FORMAT", "xml"),
    ] {
        let err = Config::resolve(&Flags::default(), &env(&[(k, v)])).expect_err(k);
        assert!(err.to_string().contains("invalid setting"), "{k}: {err}");
    }
}
