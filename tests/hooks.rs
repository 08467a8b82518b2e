//! `pre_snapshot` and `post_snapshot`: real shell scripts run by `snaprotd once` around
//! the create, their order checked against the simulator's request log and the times the
//! hooks write down; failures, time-outs, an interrupt, and what `check` refuses.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{Env, eventually, request_log};
use snaprotd::sim::{Fault, RequestRecord, SimState};

/// Writes an executable shell script `name` into the test's directory: it notes its
/// arguments, its environment and when it started and ended in `<name>.args`,
/// `<name>.env`, `<name>.start` and `<name>.end`, running `body` in between.
fn hook(env: &Env, name: &str, body: &str) -> PathBuf {
    let path = env.dir.path().join(name);
    let out = path.display();
    let text = format!(
        "#!/bin/sh\n\
         date +%s.%N > '{out}.start'\n\
         env | sort > '{out}.env'\n\
         printf '%s\\n' \"$@\" > '{out}.args'\n\
         {body}\n\
         date +%s.%N > '{out}.end'\n"
    );
    std::fs::write(&path, text).expect("hook script");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    path
}

/// A `stop_server` policy "cold" on server 1 with `extra` keys.
fn policy(extra: &str) -> String {
    format!(
        r#"
[[policy]]
name = "cold"
servers = [1]
schedule = "@daily"
keep = 3
stop_server = true
hook_timeout = "1s"
{extra}
"#
    )
}

/// The two hooks of `policy`, as keys.
fn hooks(pre: &Path, post: &Path) -> String {
    format!(
        "pre_snapshot = [\"{}\", \"two words\", \"--db\"]\npost_snapshot = [\"{}\"]\n",
        pre.display(),
        post.display()
    )
}

/// When a hook started or ended (`what`: "start", "end"), if it did.
fn noted_at(env: &Env, name: &str, what: &str) -> Option<DateTime<Utc>> {
    let text = std::fs::read_to_string(env.dir.path().join(format!("{name}.{what}"))).ok()?;
    let (secs, nanos) = text.trim().split_once('.')?;
    DateTime::from_timestamp(secs.parse().ok()?, nanos.parse().ok()?)
}

fn at(env: &Env, name: &str, what: &str) -> DateTime<Utc> {
    noted_at(env, name, what).unwrap_or_else(|| panic!("{name} did not note its {what}"))
}

/// The hook's environment: NAME=value lines.
fn environment(env: &Env, name: &str) -> Vec<String> {
    std::fs::read_to_string(env.dir.path().join(format!("{name}.env")))
        .unwrap_or_else(|_| panic!("{name} did not run"))
        .lines()
        .map(str::to_string)
        .collect()
}

fn ran(env: &Env, name: &str) -> bool {
    env.dir.path().join(format!("{name}.start")).exists()
}

/// The first request of `method` whose path starts with `path`.
fn first(st: &SimState, method: &str, path: &str) -> Option<RequestRecord> {
    st.requests
        .iter()
        .find(|r| r.method == method && r.path.starts_with(path))
        .cloned()
}

fn created(st: &SimState) -> bool {
    first(st, "POST", "/snapshots/").is_some()
}

/// The server was stopped once and started again once, and runs.
fn started_again(st: &SimState) {
    let s = &st.servers[&1];
    assert_eq!(
        (s.status.as_str(), s.stops, s.starts),
        ("running", 1, 1),
        "{}",
        request_log(st)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hooks_run_after_the_stop_around_the_create_and_before_the_start() {
    // Long enough that post_snapshot, run once the create is answered, ends before it.
    let env = Env::with_create_time(Duration::from_millis(1500)).await;
    env.sim.add_server(1, "db");
    let pre = hook(&env, "pre", "echo freezing; echo 'a note' >&2");
    let post = hook(&env, "post", "echo thawing");
    env.write_config(&policy(&hooks(&pre, &post)));
    let out = env
        .command(&["once"])
        .env("SNAPROTD_SECRET_OF_ITS_OWN", "x")
        .output()
        .await
        .expect("once runs");
    let all = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{all}");
    // The log tells it in the order it happened: the create, then the thaw.
    let line = |needle: &str| {
        all.find(needle)
            .unwrap_or_else(|| panic!("{needle}: {all}"))
    };
    assert!(
        line("created snapshot") < line("running post_snapshot"),
        "{all}"
    );

    let st = env.sim.state();
    let log = request_log(&st);
    let stop = first(&st, "POST", "/servers/1/stop/").expect("a stop");
    let create = first(&st, "POST", "/snapshots/").expect("a create");
    let start = first(&st, "POST", "/servers/1/start/").expect("a start");
    let snapshot = st.snapshots_of(1)[0].clone();
    let (pre_start, pre_end) = (at(&env, "pre", "start"), at(&env, "pre", "end"));
    let (post_start, post_end) = (at(&env, "post", "start"), at(&env, "post", "end"));
    let times = format!(
        "stop answered {}, pre {pre_start}..{pre_end}, snapshot made {}, create answered {}, \
         post {post_start}..{post_end}, completes {:?}, start answered {}\n{log}",
        stop.at, snapshot.created_at, create.at, snapshot.finishes_at, start.at
    );
    assert!(stop.at < pre_start, "pre ran before the stop: {times}");
    assert!(
        pre_end < snapshot.created_at,
        "the create came before pre ended: {times}"
    );
    assert!(
        create.at < post_start,
        "post ran before the create was answered: {times}"
    );
    assert!(
        snapshot.finishes_at.is_some_and(|f| post_end < f),
        "post waited for the snapshot to complete: {times}"
    );
    assert!(
        post_end < start.at,
        "the server started before post: {times}"
    );
    assert_eq!(snapshot.status, "completed");

    // The environment: the job, the phase, the result for post; nothing of snaprotd's.
    let pre_env = environment(&env, "pre");
    let post_env = environment(&env, "post");
    for (vars, phase) in [(&pre_env, "pre"), (&post_env, "post")] {
        for want in [
            "SNAPROTD_POLICY=cold".to_string(),
            "SNAPROTD_SERVER_ID=1".to_string(),
            format!("SNAPROTD_SNAPSHOT_NAME={}", snapshot.name),
            format!("SNAPROTD_PHASE={phase}"),
        ] {
            assert!(vars.contains(&want), "{want} missing: {vars:?}");
        }
        for var in vars.iter() {
            let name = var.split('=').next().unwrap_or_default();
            assert!(
                ["PATH", "PWD", "SHLVL", "_", "OLDPWD"].contains(&name)
                    || name.starts_with("SNAPROTD_") && name != "SNAPROTD_SECRET_OF_ITS_OWN",
                "the hook got {var:?} of snaprotd's environment: {vars:?}"
            );
        }
    }
    assert!(post_env.contains(&"SNAPROTD_RESULT=ok".to_string()));
    assert!(!pre_env.iter().any(|v| v.starts_with("SNAPROTD_RESULT=")));
    let args = std::fs::read_to_string(env.dir.path().join("pre.args")).unwrap();
    assert_eq!(
        args, "two words\n--db\n",
        "the words reach it as written, no shell"
    );

    // Its output is in the job's log: stdout as info, stderr as a warning.
    for (level, line) in [
        (" INFO ", "pre_snapshot: freezing"),
        (" WARN ", "pre_snapshot (stderr): a note"),
        (" INFO ", "post_snapshot: thawing"),
    ] {
        assert!(
            all.lines()
                .any(|l| l.contains(level) && l.contains(line) && l.contains("job_id=cold@1")),
            "{line:?} not in the job's log:\n{all}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_pre_hook_means_no_snapshot_a_thaw_and_the_server_started_again() {
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    let pre = hook(
        &env,
        "pre",
        "echo 'first complaint' >&2; echo 'cannot lock tables' >&2; exit 3",
    );
    let post = hook(&env, "post", "");
    env.write_config(&policy(&hooks(&pre, &post)));
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.all().contains(&format!(
            "pre_snapshot `{} \"two words\" --db` exited with status 3, last said on stderr: \
             \"cannot lock tables\"; no snapshot was made",
            pre.display()
        )),
        "{}",
        out.all()
    );
    let st = env.sim.state();
    assert!(
        !created(&st),
        "a create after a failed pre hook:\n{}",
        request_log(&st)
    );
    assert!(environment(&env, "post").contains(&"SNAPROTD_RESULT=pre-failed".to_string()));
    started_again(&st);
    let start = first(&st, "POST", "/servers/1/start/").expect("a start");
    assert!(at(&env, "post", "end") < start.at, "{}", request_log(&st));
}

/// The pid in `file` of the test's directory, once it is there.
async fn pid_in(env: &Env, file: &str) -> i32 {
    let path = env.dir.path().join(file);
    let mut pid = None;
    eventually(5, || {
        pid = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.trim().parse().ok());
        pid.is_some()
    })
    .await;
    pid.unwrap_or_else(|| panic!("no pid in {file}"))
}

/// Whether process `pid` is gone (or a zombie waiting for init).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// A pre hook whose child starts a grandchild; all three hang. Their pids go to
/// `hook.pid`, `child.pid` and `grandchild.pid`.
const HANGS: &str = "echo $$ > \"$0.dir/hook.pid\"\n\
     sh -c 'sleep 30 & echo $! > \"$1/grandchild.pid\"; echo $$ > \"$1/child.pid\"; wait' \
     child \"$0.dir\" &\n\
     wait";

/// `HANGS` for a hook in `env`'s directory.
fn hanging_hook(env: &Env) -> PathBuf {
    let dir = env.dir.path().display().to_string();
    hook(env, "pre", &HANGS.replace("$0.dir", &dir))
}

async fn assert_all_killed(env: &Env) {
    let pids = [
        pid_in(env, "hook.pid").await,
        pid_in(env, "child.pid").await,
        pid_in(env, "grandchild.pid").await,
    ];
    assert!(
        eventually(3, || pids.iter().all(|p| gone(*p))).await,
        "still running: {:?}",
        pids.iter().filter(|p| !gone(**p)).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_pre_hook_is_killed_at_hook_timeout_with_every_process_it_started() {
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    let pre = hanging_hook(&env);
    let post = hook(&env, "post", "");
    env.write_config(
        &policy(&format!("{}hook_timeout = \"700ms\"\n", hooks(&pre, &post)))
            .replace("hook_timeout = \"1s\"\n", ""),
    );
    let started = std::time::Instant::now();
    let out = env.snaprotd_within(&["once"], 20).await;
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.all().contains(
            "did not finish within hook_timeout (700ms): it was killed with every process it started; \
             no snapshot was made"
        ),
        "{}",
        out.all()
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_all_killed(&env).await;
    let st = env.sim.state();
    assert!(!created(&st), "{}", request_log(&st));
    assert!(environment(&env, "post").contains(&"SNAPROTD_RESULT=pre-failed".to_string()));
    started_again(&st);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_kills_a_running_pre_hook_at_the_end_of_shutdown_timeout_and_still_thaws() {
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    let pre = hanging_hook(&env);
    let post = hook(&env, "post", "");
    let config = format!(
        "{}\n{}",
        env.header(),
        policy(&format!("{}hook_timeout = \"30s\"\n", hooks(&pre, &post)))
            .replace("hook_timeout = \"1s\"\n", "")
    )
    .replace("[daemon]\n", "[daemon]\nshutdown_timeout = \"500ms\"\n");
    std::fs::write(&env.config, config).unwrap();
    let child = env.command(&["once"]).spawn().expect("once runs");
    let pid = child.id().expect("pid").to_string();
    pid_in(&env, "grandchild.pid").await;
    let term = std::process::Command::new("kill")
        .args(["-s", "TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(term.success());
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("once ends well before hook_timeout")
        .expect("wait");
    let all = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(143), "{all}");
    assert!(
        all.contains("was still running when snaprotd stopped"),
        "{all}"
    );
    assert_all_killed(&env).await;
    let st = env.sim.state();
    assert!(!created(&st), "{}", request_log(&st));
    assert!(environment(&env, "post").contains(&"SNAPROTD_RESULT=pre-failed".to_string()));
    started_again(&st);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_create_is_thawed_with_create_failed() {
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    env.sim
        .inject(Fault::status("POST", "/snapshots/", 400, None));
    let pre = hook(&env, "pre", "");
    let post = hook(&env, "post", "");
    env.write_config(&policy(&hooks(&pre, &post)));
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.all().contains("rejected (HTTP 400)"), "{}", out.all());
    let st = env.sim.state();
    let create = first(&st, "POST", "/snapshots/").expect("a create");
    assert!(at(&env, "pre", "end") < create.at);
    assert!(
        create.at < at(&env, "post", "start"),
        "{}",
        request_log(&st)
    );
    assert!(environment(&env, "post").contains(&"SNAPROTD_RESULT=create-failed".to_string()));
    started_again(&st);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_post_hook_fails_the_run_and_the_server_is_still_started() {
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    let pre = hook(&env, "pre", "");
    let post = hook(&env, "post", "echo 'still frozen' >&2; exit 1");
    env.write_config(&policy(&hooks(&pre, &post)));
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 1, "{}", out.all());
    let says = format!(
        "post_snapshot `{}` exited with status 1, last said on stderr: \"still frozen\"; \
         the snapshot was made and is waited for, but the run fails",
        post.display()
    );
    assert!(
        out.all()
            .lines()
            .any(|l| l.contains("ERROR") && l.contains(&says)),
        "{}",
        out.all()
    );
    let st = env.sim.state();
    assert_eq!(st.snapshots_of(1)[0].status, "completed");
    started_again(&st);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_adopted_snapshot_runs_no_hook_and_dry_run_says_which_would_run() {
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    let pre = hook(&env, "pre", "");
    let post = hook(&env, "post", "");
    let keys = format!(
        "{}snapshot_name = \"{{policy}}-%Y%m%d\"\n",
        hooks(&pre, &post)
    );
    env.write_config(&policy(&keys));

    let out = env.snaprotd(&["once", "--dry-run"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    for line in [
        format!(
            "  pre hook     would run {} \"two words\" --db after the server is stopped, before the create",
            pre.display()
        ),
        format!(
            "  post hook    would run {} once the create is answered (or has failed, or the pre hook has)",
            post.display()
        ),
    ] {
        assert!(out.stdout.contains(&line), "{line:?}:\n{}", out.stdout);
    }
    let out = env.snaprotd(&["once", "--dry-run", "--json"]).await;
    let json: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(
        json["plans"][0]["hooks"]["post_snapshot"],
        serde_json::json!([post.display().to_string()]),
        "{json}"
    );
    assert!(
        !ran(&env, "pre") && !ran(&env, "post"),
        "a dry run ran a hook"
    );

    // A snapshot of the run's name exists: it is adopted, and nothing is frozen for it.
    let name = Utc::now().format("cold-%Y%m%d").to_string();
    env.sim
        .state()
        .add_snapshot(1, &name, "completed", Utc::now());
    let out = env.snaprotd(&["once", "--dry-run"]).await;
    assert!(
        out.stdout
            .contains("  hooks        none: they run only around the create of a new snapshot"),
        "{}",
        out.stdout
    );
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("(adopted: it existed)"),
        "{}",
        out.stdout
    );
    assert!(!ran(&env, "pre") && !ran(&env, "post"), "{}", out.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pre_hook_that_leaves_a_process_behind_does_not_hold_up_the_run() {
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    let dir = env.dir.path().display().to_string();
    // The process left behind holds the hook's stdout and stderr open.
    let pre = hook(
        &env,
        "pre",
        &format!("sleep 30 & echo $! > '{dir}/behind.pid'"),
    );
    env.write_config(&policy(&format!(
        "pre_snapshot = [\"{}\"]\n",
        pre.display()
    )));
    let started = std::time::Instant::now();
    let out = env.snaprotd_within(&["once"], 20).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(started.elapsed() < Duration::from_secs(10));
    let behind = pid_in(&env, "behind.pid").await;
    // A freeze may rest on a process it leaves behind (a lock held open): left alone.
    assert!(!gone(behind), "the process a hook left behind was killed");
    let _ = std::process::Command::new("kill")
        .arg(behind.to_string())
        .status();
}

/// `check` refuses a hook that is not a program by absolute path, naming the key.
#[tokio::test(flavor = "multi_thread")]
async fn check_refuses_a_hook_that_is_not_a_program_by_absolute_path() {
    let env = Env::new().await;
    for (keys, at, says) in [
        (
            "pre_snapshot = [\"freeze\", \"--db\"]",
            "pre_snapshot = [",
            "key `policy[cold].pre_snapshot`: \"freeze\" is not the absolute path of a program",
        ),
        (
            "post_snapshot = []",
            "post_snapshot = ",
            "key `policy[cold].post_snapshot`: is empty: give the program's absolute path first",
        ),
        (
            "post_snapshot = [\"/bin/true\", 3]",
            "post_snapshot = [\"/bin/true\", ",
            "key `policy[cold].post_snapshot`: expected a program and its arguments, each in \
             quotes, like post_snapshot = [\"/usr/local/bin/thaw\"]; found a whole number",
        ),
        (
            "hook_timeout = \"0s\"",
            "hook_timeout = ",
            "key `policy[cold].hook_timeout`: must be longer than zero",
        ),
    ] {
        env.write_config(&policy(keys).replace("hook_timeout = \"1s\"\n", ""));
        let text = std::fs::read_to_string(&env.config).unwrap();
        let line = text
            .lines()
            .position(|l| l.starts_with(at))
            .expect("the key's line")
            + 1;
        let column = at.len() + 1;
        let out = env.snaprotd(&["check"]).await;
        assert_eq!(out.code, 78, "{keys}: {}", out.all());
        let want = format!("{}:{line}:{column}: {says}", env.config.display());
        assert!(out.stderr.contains(&want), "{want:?}:\n{}", out.stderr);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn check_warns_of_a_hook_program_that_is_not_there() {
    let env = Env::new().await;
    let missing = env.dir.path().join("freeze");
    env.write_config(&policy(&format!(
        "pre_snapshot = [\"{}\"]",
        missing.display()
    )));
    let out = env.snaprotd(&["check"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.all().contains(&format!(
            "there is no {}: every run of the policy fails until there is",
            missing.display()
        )),
        "{}",
        out.all()
    );
    // check shows the policy's hooks.
    assert!(
        out.stdout.contains(&format!(
            "  pre_snapshot  {} (hook_timeout",
            missing.display()
        )),
        "{}",
        out.stdout
    );
}

/// The hooks of a freeze that snaprotd is killed in: `pre_snapshot` notes its pid in
/// `frozen.pid` and sleeps the first time (later times it returns at once);
/// `post_snapshot` adds a line `RESULT SNAPSHOT_NAME` to `thaws` each time it runs, and
/// when it did to `thaws.at`.
fn killed_in_the_freeze(env: &Env) -> String {
    let dir = env.dir.path().display().to_string();
    let pre = hook(
        env,
        "pre",
        &format!("if [ ! -e '{dir}/frozen.pid' ]; then echo $$ > '{dir}/frozen.pid'; sleep 30; fi"),
    );
    let post = hook(
        env,
        "post",
        &format!(
            "echo \"$SNAPROTD_RESULT $SNAPROTD_SNAPSHOT_NAME\" >> '{dir}/thaws'\n\
             date +%s.%N >> '{dir}/thaws.at'"
        ),
    );
    format!(
        "pre_snapshot = [\"{}\"]\npost_snapshot = [\"{}\"]\n",
        pre.display(),
        post.display()
    )
}

/// Waits for the freeze to be under way, then kills snaprotd (`pid`) with SIGKILL and
/// the hook's process group after it (a SIGKILL leaves it running). Returns the name of
/// the snapshot it froze for.
async fn kill_in_the_freeze(env: &Env, pid: u32) -> String {
    let hook = pid_in(env, "frozen.pid").await;
    let name = environment(env, "pre")
        .iter()
        .find_map(|v| {
            v.strip_prefix("SNAPROTD_SNAPSHOT_NAME=")
                .map(str::to_string)
        })
        .expect("the pre hook's snapshot name");
    for target in [pid.to_string(), format!("-{hook}")] {
        let killed = std::process::Command::new("kill")
            .args(["-s", "KILL", "--", &target])
            .status()
            .expect("kill runs");
        assert!(killed.success(), "kill {target}");
    }
    assert!(eventually(5, || gone(hook)).await, "the freeze lives on");
    name
}

/// The lines of `file` in the test's directory.
fn lines(env: &Env, file: &str) -> Vec<String> {
    std::fs::read_to_string(env.dir.path().join(file))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// When the first thaw ran.
fn first_thaw_at(env: &Env) -> DateTime<Utc> {
    lines(env, "thaws.at")
        .first()
        .and_then(|t| {
            let (secs, nanos) = t.split_once('.')?;
            DateTime::from_timestamp(secs.parse().ok()?, nanos.parse().ok()?)
        })
        .expect("a thaw noted when it ran")
}

fn hook_record(env: &Env) -> PathBuf {
    env.dir.path().join("state/hooks/1.json")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_freeze_cut_short_by_sigkill_is_thawed_by_the_next_once_before_the_server_starts() {
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    env.write_config(
        &policy(&format!(
            "{}hook_timeout = \"30s\"\n",
            killed_in_the_freeze(&env)
        ))
        .replace("hook_timeout = \"1s\"\n", ""),
    );
    let child = env.command(&["once"]).spawn().expect("once runs");
    let frozen = kill_in_the_freeze(&env, child.id().expect("pid")).await;
    let out = child.wait_with_output().await.expect("wait");
    assert_eq!(out.status.code(), None, "killed");
    assert_eq!(env.sim.state().server_status(1), Some("stopped"));

    let out = env.snaprotd_within(&["once"], 30).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let thaws = lines(&env, "thaws");
    assert_eq!(thaws.len(), 2, "{thaws:?}\n{}", out.all());
    assert_eq!(thaws[0], format!("interrupted {frozen}"), "{}", out.all());
    assert!(thaws[1].starts_with("ok "), "{thaws:?}");
    assert!(
        out.all().lines().any(|l| l.contains(" WARN ")
            && l.contains("SNAPROTD_RESULT=interrupted")
            && l.contains(&frozen)),
        "{}",
        out.all()
    );
    // The thaw came first: before the server's start, the new freeze and the create.
    let st = env.sim.state();
    let log = request_log(&st);
    let thawed = first_thaw_at(&env);
    let start = first(&st, "POST", "/servers/1/start/").expect("a start");
    let create = first(&st, "POST", "/snapshots/").expect("a create");
    let times = format!(
        "thawed {thawed}, started {}, frozen again {}, created {}\n{log}",
        start.at,
        at(&env, "pre", "start"),
        create.at
    );
    assert!(thawed < start.at, "{times}");
    assert!(thawed < at(&env, "pre", "start"), "{times}");
    assert!(thawed < create.at, "{times}");
    assert_eq!(st.server_status(1), Some("running"), "{log}");
    assert!(!hook_record(&env).exists(), "the record stays");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_freeze_cut_short_by_sigkill_is_thawed_when_the_daemon_starts_again() {
    use chrono::Timelike;
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    // One fire, two seconds from now; no catch-up: after the restart, no run of its own.
    let at = Utc::now() + chrono::Duration::seconds(2);
    let schedule = format!("{} {} {} * * *", at.second(), at.minute(), at.hour());
    env.write_config(&format!(
        "[[policy]]\nname = \"warm\"\nservers = [1]\nschedule = \"{schedule}\"\nkeep = 3\n\
         catch_up = false\nhook_timeout = \"30s\"\n{}",
        killed_in_the_freeze(&env)
    ));
    let mut d = env.start_daemon(&["run"], &[]).await;
    let frozen = kill_in_the_freeze(&env, d.pid).await;
    assert_eq!(d.wait_exit(10).await, None);

    let mut d = env.start_daemon(&["run"], &[]).await;
    d.wait_note("READY=1", 1, 10).await;
    assert!(
        eventually(10, || !lines(&env, "thaws").is_empty()).await,
        "no thaw:\n{}",
        d.log()
    );
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));
    assert_eq!(lines(&env, "thaws"), [format!("interrupted {frozen}")]);
    assert!(
        d.log().lines().any(|l| l.contains(" WARN ")
            && l.contains("SNAPROTD_RESULT=interrupted")
            && l.contains("warm@1")),
        "{}",
        d.log()
    );
    assert!(!hook_record(&env).exists(), "the record stays");
    let st = env.sim.state();
    assert!(!created(&st), "{}", request_log(&st));
    assert_eq!(st.server_status(1), Some("running"));
}

/// A record left for a freeze in `env`'s state directory, as snaprotd writes it.
fn leave_hook_record(env: &Env, bytes: &[u8]) {
    let dir = env.dir.path().join("state/hooks");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("1.json"), bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_freeze_left_by_a_policy_no_longer_configured_is_reported_and_forgotten() {
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    let dir = env.dir.path().display().to_string();
    let post = hook(
        &env,
        "post",
        &format!("echo \"$SNAPROTD_RESULT $SNAPROTD_POLICY\" >> '{dir}/thaws'"),
    );
    env.write_config(&policy(&format!(
        "post_snapshot = [\"{}\"]\n",
        post.display()
    )));
    leave_hook_record(
        &env,
        br#"{"job": "gone@1", "policy": "gone", "server": 1, "snapshot_name": "gone-1",
            "started_at": "2026-11-24T10:15:00Z"}"#,
    );
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.all().lines().any(|l| l.contains("ERROR")
            && l.contains("gone@1")
            && l.contains("gone-1")
            && l.contains("may still hold")),
        "{}",
        out.all()
    );
    assert_eq!(lines(&env, "thaws"), ["ok cold"], "only the run's own thaw");
    assert!(!hook_record(&env).exists(), "the record stays");
    started_again(&env.sim.state());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_freeze_record_that_cannot_be_read_is_set_aside_at_start() {
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    let post = hook(&env, "post", "");
    env.write_config(&policy(&format!(
        "post_snapshot = [\"{}\"]\n",
        post.display()
    )));
    leave_hook_record(&env, b"{\"job\": \"cold@1\", \"poli");
    let mut d = env.start_daemon(&["run"], &[]).await;
    d.wait_note("READY=1", 1, 10).await;
    let set_aside = || {
        std::fs::read_dir(env.dir.path().join("state/hooks"))
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.starts_with("1.json.corrupt-"))
                    .count()
            })
            .unwrap_or(0)
    };
    let aside = eventually(10, || set_aside() == 1 && !hook_record(&env).exists()).await;
    d.signal("TERM");
    assert_eq!(d.wait_exit(20).await, Some(0));
    assert!(aside, "not set aside:\n{}", d.log());
    assert!(
        d.log()
            .lines()
            .any(|l| l.contains("ERROR") && l.contains("1.json") && l.contains("may still hold")),
        "{}",
        d.log()
    );
    assert!(!ran(&env, "post"), "a thaw without knowing for what");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_freeze_left_behind_is_critical_in_status_and_in_the_metrics_until_thawed() {
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    let dir = env.dir.path().display().to_string();
    let post = hook(
        &env,
        "post",
        &format!("echo \"$SNAPROTD_RESULT $SNAPROTD_SNAPSHOT_NAME\" >> '{dir}/thaws'"),
    );
    let metrics = env.dir.path().join("snaprotd.prom");
    let header = env.header().replacen(
        "[daemon]\n",
        &format!("[daemon]\nmetrics_file = \"{}\"\n", metrics.display()),
        1,
    );
    let policy = policy(&format!("post_snapshot = [\"{}\"]\n", post.display()));
    std::fs::write(&env.config, format!("{header}{policy}")).unwrap();
    leave_hook_record(
        &env,
        br#"{"job": "cold@1", "policy": "cold", "server": 1, "snapshot_name": "cold-x",
            "started_at": "2026-11-24T10:15:00Z"}"#,
    );

    let out = env.snaprotd(&["status", "--check"]).await;
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(
        out.stdout.contains("server 1 left frozen") && out.stdout.contains("frozen=1"),
        "{}",
        out.all()
    );
    let out = env.snaprotd(&["status"]).await;
    assert!(
        out.stdout.contains("Freezes not thawed:")
            && out.stdout.contains("pre_snapshot of cold@1 ran at")
            && out.stdout.contains("SNAPROTD_RESULT=interrupted"),
        "{}",
        out.all()
    );
    let out = env.snaprotd(&["status", "--json"]).await;
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect(&out.stdout);
    assert_eq!(v["freezes_left"][0]["job"], "cold@1", "{}", out.stdout);
    assert!(hook_record(&env).exists(), "status only reads");

    // A run thaws it first and writes the metrics file: nothing left.
    let out = env.snaprotd(&["once"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(lines(&env, "thaws")[0], "interrupted cold-x");
    let prom = std::fs::read_to_string(&metrics).expect("metrics file");
    assert!(prom.contains("\nsnaprotd_freezes_left 0\n"), "{prom}");
    let out = env.snaprotd(&["status", "--check"]).await;
    assert!(out.stdout.contains("frozen=0"), "{}", out.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_and_prune_thaw_a_freeze_left_behind_before_they_act() {
    let env = Env::new().await;
    env.sim.add_server(1, "db");
    let dir = env.dir.path().display().to_string();
    let post = hook(
        &env,
        "post",
        &format!(
            "echo \"$SNAPROTD_RESULT $SNAPROTD_SNAPSHOT_NAME\" >> '{dir}/thaws'\n\
             date +%s.%N >> '{dir}/thaws.at'"
        ),
    );
    env.write_config(&policy(&format!(
        "post_snapshot = [\"{}\"]\n",
        post.display()
    )));
    env.sim
        .state()
        .add_snapshot(1, "manual-1", "completed", Utc::now());
    leave_hook_record(
        &env,
        br#"{"job": "cold@1", "policy": "cold", "server": 1, "snapshot_name": "cold-x",
            "started_at": "2026-11-24T10:15:00Z"}"#,
    );
    let out = env.snaprotd(&["restore", "manual-1", "--yes"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        lines(&env, "thaws"),
        ["interrupted cold-x"],
        "{}",
        out.all()
    );
    {
        let st = env.sim.state();
        let restore = st
            .requests
            .iter()
            .find(|r| r.method == "POST" && r.path.ends_with("/restore/"))
            .cloned()
            .expect("the restore");
        assert!(first_thaw_at(&env) < restore.at, "{}", request_log(&st));
    }
    assert!(!hook_record(&env).exists());

    // prune --orphans takes the lock the same way.
    leave_hook_record(
        &env,
        br#"{"job": "cold@1", "policy": "cold", "server": 1, "snapshot_name": "cold-y",
            "started_at": "2026-11-24T10:15:00Z"}"#,
    );
    {
        let mut st = env.sim.state();
        let id = st.add_snapshot(1, "old-20261120-0230", "completed", Utc::now());
        if let Some(s) = st.snapshots.get_mut(&id) {
            s.description = Some("snaprotd policy old".into());
        }
    }
    let out = env.snaprotd(&["prune", "--orphans", "--yes"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        lines(&env, "thaws"),
        ["interrupted cold-x", "interrupted cold-y"],
        "{}",
        out.all()
    );
}
