//! Issue 10: the run store never touches what is not its own.

use crate::support::dynhost;

#[test]
fn a_database_of_another_program_is_refused_unchanged_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("runs.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY); INSERT INTO orders VALUES (7);",
        )
        .unwrap();
    }
    let before = std::fs::read(&db).unwrap();
    for command in [&["runs"][..], &["show", "x"], &["resume", "x"]] {
        let mut args = command.to_vec();
        args.extend(["--store", dir.path().to_str().unwrap()]);
        let out = dynhost(dir.path(), &args);
        out.assert_code(2);
        assert!(
            out.stderr.contains("another program") && out.stderr.contains("runs.db"),
            "{args:?}: {}",
            out.stderr
        );
    }
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "the foreign database changed"
    );
}
