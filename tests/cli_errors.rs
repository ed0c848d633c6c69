//! Bad input gets one clear line naming what is wrong and a non-zero exit; nothing is
//! half-written. Runs the real binaries.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use certfleet_tests::*;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_clean_failure(out: &std::process::Output, needles: &[&str]) {
    let err = stderr(out);
    assert!(!out.status.success(), "expected failure, got success: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr should mention {n:?}:\n{err}");
    }
    assert!(!err.contains("panicked"), "no panics:\n{err}");
}

#[test]
fn missing_and_invalid_config_files_are_named() {
    let env = TestEnv::new("");
    let missing = env.path("nope.toml");
    for binary in ["certfleet", "certfleet-scheduler", "certfleet-worker"] {
        let mut cmd = command(binary);
        cmd.arg("--config").arg(&missing);
        if binary == "certfleet" {
            cmd.args(["assets", "list"]);
        }
        assert_clean_failure(&cmd.output().unwrap(), &["nope.toml", "not found"]);
    }
    let bad = env.path("bad.toml");
    std::fs::write(&bad, "scan_interval = \"soonish\"\n").unwrap();
    let out = command("certfleet").arg("--config").arg(&bad).args(["assets", "list"]).output().unwrap();
    assert_clean_failure(&out, &["scan_interval"]);
    std::fs::write(&bad, "[worker]\nconcurency = 3\n").unwrap();
    let out = command("certfleet-worker").arg("--config").arg(&bad).output().unwrap();
    assert_clean_failure(&out, &["concurency"]);
    std::fs::write(&bad, "[issuers.x]\nkind = \"internal\"\nvalidity = \"10s\"\n").unwrap();
    let out = command("certfleet-scheduler").arg("--config").arg(&bad).output().unwrap();
    assert_clean_failure(&out, &["validity", "at least 1m"]);
}

#[test]
fn unreachable_broker_and_database_name_the_url_without_the_password() {
    let env = TestEnv::new("");
    let out = env_cmd(&env, "certfleet", &["queues"], &[("CERTFLEET_AMQP_URL", "amqp://guest:s3cr3t@127.0.0.1:1/%2f")]);
    assert_clean_failure(&out, &["127.0.0.1:1", "RabbitMQ"]);
    assert!(!stderr(&out).contains("s3cr3t"));
    assert_eq!(stderr(&out).trim().lines().count(), 1, "one line: {}", stderr(&out));
    let out = env_cmd(&env, "certfleet-worker", &[], &[("CERTFLEET_AMQP_URL", "amqp://guest:s3cr3t@127.0.0.1:1/%2f")]);
    assert_clean_failure(&out, &["127.0.0.1:1"]);
    assert!(!stderr(&out).contains("s3cr3t"));
    let out = env_cmd(
        &env,
        "certfleet",
        &["assets", "list"],
        &[("CERTFLEET_DATABASE_URL", "postgres://u:hunter2@127.0.0.1:1/db")],
    );
    assert_clean_failure(&out, &["127.0.0.1:1", "database"]);
    assert!(!stderr(&out).contains("hunter2"));
    let out = env_cmd(
        &env,
        "certfleet-scheduler",
        &["--once"],
        &[("CERTFLEET_DATABASE_URL", "postgres://u:hunter2@127.0.0.1:1/db")],
    );
    assert_clean_failure(&out, &["127.0.0.1:1"]);
    assert!(!stderr(&out).contains("hunter2"));
}

fn env_cmd(env: &TestEnv, binary: &str, args: &[&str], vars: &[(&str, &str)]) -> std::process::Output {
    command(binary).arg("--config").arg(&env.config).args(args).envs(vars.iter().copied()).output().unwrap()
}

#[test]
fn bad_import_files_name_row_and_field_and_import_nothing() {
    let env = TestEnv::new("");
    let json = env.path("bad.json");
    std::fs::write(
        &json,
        r#"[{"system_name":"ok-1","common_name":"ok-1.test","certificate_authority":"internal","host_platform":"local"},
            {"system_name":"bad-port","common_name":"x.test","certificate_authority":"internal","host_platform":"local","port":99999},
            {"system_name":"bad-ca","common_name":"y.test","certificate_authority":"letsencrypt","host_platform":"local"},
            {"system_name":"typo","common_name":"z.test","certificate_authority":"internal","host_platform":"local","prot":443}]"#,
    )
    .unwrap();
    let out = env.cli(&["assets", "import", json.to_str().unwrap()]);
    assert_clean_failure(&out, &["row 2 (bad-port): field `port`", "row 4 (typo)", "prot", "nothing imported"]);
    let out = env.cli(&["assets", "import", json.to_str().unwrap()]);
    assert!(!out.status.success());

    let csv = env.path("bad.csv");
    std::fs::write(
        &csv,
        "system_name,common_name,certificate_authority,host_platform,certificate_validation\n\
         a,a.test,internal,local,true\n\
         b,not a name!,internal,local,maybe\n",
    )
    .unwrap();
    let out = env.cli(&["assets", "import", csv.to_str().unwrap()]);
    assert_clean_failure(&out, &["row 2 (b): field `certificate_validation`", "maybe"]);

    // Both imports failed, so the inventory is empty; a fixed row then imports.
    assert_eq!(env.cli_ok(&["assets", "list", "--json"]).trim(), "[]");
    let err_ca = env.cli(&["assets", "import", json.to_str().unwrap()]);
    assert!(stderr(&err_ca).contains("row 3 (bad-ca): field `certificate_authority`"), "{}", stderr(&err_ca));
    std::fs::write(&csv, "system_name,common_name,certificate_authority,host_platform\nb,b.test,internal,local\n")
        .unwrap();
    assert!(env.cli_ok(&["assets", "import", csv.to_str().unwrap()]).contains("imported 1"));

    // A large CSV is streamed into one transaction in chunks: a bad row, or a malformed
    // record, after several chunks were written still leaves nothing behind.
    let big = env.path("big.csv");
    let good_rows = |n: usize| (0..n).map(|i| format!("big-{i},big-{i}.test,internal,local\n")).collect::<String>();
    let header = "system_name,common_name,certificate_authority,host_platform\n";
    std::fs::write(
        &big,
        format!("{header}{}big-dup,x.test,internal,local\nbig-0,again.test,internal,local\n", good_rows(4000)),
    )
    .unwrap();
    assert_clean_failure(
        &env.cli(&["assets", "import", big.to_str().unwrap()]),
        &["1 invalid row(s), nothing imported", "row 4002 (big-0): field `system_name`: appears more than once"],
    );
    std::fs::write(&big, format!("{header}{}\"unterminated,x,internal,local\n", good_rows(4000))).unwrap();
    let unreadable = env.cli(&["assets", "import", big.to_str().unwrap()]);
    assert!(!unreadable.status.success());
    assert!(stderr(&unreadable).contains("nothing imported"), "{}", stderr(&unreadable));
    let listed = env.cli_ok(&["assets", "list", "--json"]);
    assert!(!listed.contains("big-"), "nothing of the refused files was written");
    std::fs::write(&big, format!("{header}{}", good_rows(4000))).unwrap();
    assert!(env.cli_ok(&["assets", "import", big.to_str().unwrap()]).contains("imported 4000 asset(s)"));

    let txt = env.path("assets.txt");
    std::fs::write(&txt, "x").unwrap();
    assert_clean_failure(&env.cli(&["assets", "import", txt.to_str().unwrap()]), &["--format"]);
}

#[test]
fn bad_commands_and_arguments_fail_clearly() {
    let env = TestEnv::new("");
    assert_clean_failure(&env.cli(&["rotate", "no-such-asset"]), &["no-such-asset", "not found"]);
    assert_clean_failure(&env.cli(&["dlq", "retry", "not-a-uuid"]), &["not-a-uuid"]);
    let unknown = uuid::Uuid::new_v4().to_string();
    assert_clean_failure(&env.cli(&["dlq", "retry", &unknown]), &[&unknown, "not found"]);
    assert_clean_failure(&env.cli(&["dlq", "discard", &unknown]), &[&unknown, "not found"]);
    let out = command("certfleet-worker").args(["--drivers", "telnet"]).output().unwrap();
    assert_clean_failure(&out, &["telnet", "local"]);
    let out =
        command("certfleet-worker").arg("--config").arg(&env.config).args(["--concurrency", "0"]).output().unwrap();
    assert_clean_failure(&out, &["concurrency"]);
    std::fs::write(env.path("routes.toml"), "[[route]]\nhost_platform = \"local\"\ndriver = \"telnet\"\n").unwrap();
    assert_clean_failure(&env.cli(&["rotate", "x"]), &["routes.toml", "telnet"]);
}

#[test]
fn unknown_variables_are_reported_only_when_they_could_be_config_keys() {
    let env = TestEnv::new("");
    let vars = [("CERTFLEET_BIN", "/usr/local/bin/certfleet"), ("CERTFLEET_WORKER_CONCURRENCY", "3")];
    let out = env_cmd(&env, "certfleet", &["assets", "list"], &vars);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("unknown environment variable CERTFLEET_WORKER_CONCURRENCY"), "{err}");
    assert!(!err.contains("CERTFLEET_BIN"), "a user's own variable is not a config typo: {err}");
}

#[test]
fn a_missing_routes_file_and_bad_csv_cells_are_named_once() {
    let env = TestEnv::new("");
    std::fs::remove_file(env.path("routes.toml")).unwrap();
    let out = env.cli(&["rotate", "x"]);
    assert_clean_failure(&out, &["cannot read routes file", "routes.toml"]);
    assert_eq!(stderr(&out).matches("No such file or directory").count(), 1, "{}", stderr(&out));

    let csv = env.path("missing-column.csv");
    std::fs::write(
        &csv,
        "system_name,certificate_authority,host_platform,certificate_expiration\n\
         a,internal,local,\n\
         b,internal,local,31/12/2026\n",
    )
    .unwrap();
    let out = env.cli(&["assets", "import", csv.to_str().unwrap()]);
    assert_clean_failure(
        &out,
        &[
            "row 1 (a): field `common_name`: required, but the column is missing or the cell is empty",
            "row 2 (b): field `certificate_expiration`: \"31/12/2026\" is not a date and time in RFC 3339",
        ],
    );
    certfleet_shared::messages::check_text(&stderr(&out)).unwrap();
}
