//! The SQLite writer turn: writers of one process queue, and an abandoned transaction
//! passes the turn on.

use super::*;

/// SQLite writers of one process queue for their turn; a transaction dropped
/// uncommitted rolls back and then passes the turn on (no writer waits forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_writers_take_turns_and_an_abandoned_one_passes_its_turn_on() {
    let dir = std::env::temp_dir().join(format!("opshub-turn-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("dir");
    let db = Db::connect(&DbOptions {
        url: format!("sqlite://{}/t.db", dir.display()),
        pg_schema: "opshub".into(),
        max_connections: 4,
    })
    .await
    .expect("connect");
    sqlx::query("CREATE TABLE t (n INTEGER NOT NULL)")
        .execute(db.pool())
        .await
        .expect("table");
    let mut abandoned = db.begin_write().await.expect("first writer");
    sqlx::query("INSERT INTO t (n) VALUES (-1)")
        .execute(&mut *abandoned)
        .await
        .expect("insert");
    let writers: Vec<_> = (0..20)
        .map(|n| {
            let db = db.clone();
            tokio::spawn(async move {
                let mut tx = db.begin_write().await?;
                sqlx::query("INSERT INTO t (n) VALUES (?)")
                    .bind(n)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await
            })
        })
        .collect();
    drop(abandoned);
    for w in writers {
        tokio::time::timeout(Duration::from_secs(10), w)
            .await
            .expect("every writer gets its turn")
            .expect("task")
            .expect("write");
    }
    let rows: Vec<i64> = sqlx::query_scalar("SELECT n FROM t ORDER BY n")
        .fetch_all(db.pool())
        .await
        .expect("rows");
    assert_eq!(
        rows,
        (0..20).collect::<Vec<i64>>(),
        "the abandoned row rolled back"
    );
    db.close().await;
    let _ = std::fs::remove_dir_all(dir);
}
