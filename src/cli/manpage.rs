//! The man page, snaprotd(1): made from the command-line definition (every command and
//! option, with clap_mangen for the head), the example configuration (every key, its
//! default and what it means), and the sections an operator looks for: EXIT STATUS,
//! ENVIRONMENT, FILES, SIGNALS, JSON OUTPUT. It names no page that is not installed.

use std::fmt::Write as _;

use clap::Command;

/// The example configuration, each key with its default and a comment on what it means.
const EXAMPLE: &str = include_str!("../../config/snaprotd.toml");

/// Text made safe for roff: backslashes, and a `.` or `'` that would start a request.
fn esc(text: &str) -> String {
    let text = text.replace('\\', "\\e").replace('-', "\\-");
    if text.starts_with('.') || text.starts_with('\'') {
        format!("\\&{text}")
    } else {
        text
    }
}

/// The whole page, in roff.
pub fn render(cmd: &Command) -> std::io::Result<String> {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut head = Vec::new();
    man.render_title(&mut head)?;
    man.render_name_section(&mut head)?;
    man.render_synopsis_section(&mut head)?;
    man.render_description_section(&mut head)?;
    man.render_options_section(&mut head)?;
    let mut page = String::from_utf8_lossy(&head).into_owned();
    commands(cmd, &mut page);
    page.push_str(SECTIONS);
    configuration(&mut page);
    page.push_str(SEE_ALSO);
    Ok(page)
}

/// Every visible command with its own options.
fn commands(cmd: &Command, page: &mut String) {
    page.push_str(".SH COMMANDS\nWithout a command, snaprotd runs the daemon (\\fBrun\\fR).\n");
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_name();
        if name == "help" {
            continue;
        }
        let _ = writeln!(page, ".SS \"snaprotd {}\"", esc(name));
        let about = sub
            .get_long_about()
            .or_else(|| sub.get_about())
            .map(|a| a.to_string())
            .unwrap_or_default();
        for para in about.split("\n\n") {
            let _ = writeln!(page, ".PP\n{}", esc(para.trim()));
        }
        for arg in sub
            .get_arguments()
            .filter(|a| !a.is_hide_set() && !a.is_global_set())
        {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            let mut flag = match (arg.get_short(), arg.get_long()) {
                (Some(s), Some(l)) => format!("\\fB\\-{s}\\fR, \\fB\\-\\-{}\\fR", esc(l)),
                (None, Some(l)) => format!("\\fB\\-\\-{}\\fR", esc(l)),
                (Some(s), None) => format!("\\fB\\-{s}\\fR"),
                (None, None) => String::new(),
            };
            let takes_value = arg.get_action().takes_values();
            if takes_value {
                let value = arg
                    .get_value_names()
                    .and_then(|v| v.first())
                    .map_or_else(|| id.to_uppercase(), |v| v.to_string());
                if flag.is_empty() {
                    flag = format!("\\fI{}\\fR", esc(&value));
                } else {
                    let _ = write!(flag, " \\fI{}\\fR", esc(&value));
                }
            }
            let help = arg
                .get_long_help()
                .or_else(|| arg.get_help())
                .map(|h| h.to_string())
                .unwrap_or_default();
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            let default = if takes_value && !defaults.is_empty() {
                format!(" [default: {}]", defaults.join(","))
            } else {
                String::new()
            };
            let _ = writeln!(page, ".TP\n{flag}\n{}{}", esc(&help), esc(&default));
        }
    }
}

/// Every key of the example configuration, by table: its default (or "unset") and the
/// comment above it.
fn configuration(page: &mut String) {
    page.push_str(
        ".SH CONFIGURATION\n\
         The file is TOML. Durations are written like \"30s\", \"10m\", \"1h\". Every key of \
         [defaults] may also be set in a [[policy]]. \\fBsnaprotd check\\fR reports every \
         problem with file, line, column and key. The keys, with their defaults:\n",
    );
    let mut comment: Vec<&str> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut table = String::new();
    for line in EXAMPLE.lines() {
        let line = line.trim_end();
        if line.starts_with('[') {
            let name = line.trim_matches(|c| c == '[' || c == ']').to_string();
            if name != table && !seen.contains(&format!("table {name}")) {
                let _ = writeln!(page, ".SS \"{}\"", esc(line));
                let intro = comment.join(" ");
                if !intro.is_empty() {
                    let _ = writeln!(page, "{}", esc(&intro));
                }
                seen.push(format!("table {name}"));
            }
            table = name;
            comment.clear();
            continue;
        }
        let (text, commented) = match line.strip_prefix('#') {
            Some(rest) => (rest.trim_start(), true),
            None => (line, false),
        };
        let pair = text.split_once(" = ").filter(|(k, _)| {
            !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        });
        match pair {
            Some((key, value)) => {
                let full = format!("{table}.{key}");
                let shared = seen.contains(&format!("defaults.{key}")) && table == "policy";
                if !seen.contains(&full) && !shared {
                    let required = crate::config::REQUIRED_POLICY_KEYS.contains(&key);
                    let default = if commented || (table == "policy" && !required) {
                        format!("unset (for example {value})")
                    } else if table == "policy" {
                        format!("required, for example {value}")
                    } else {
                        value.to_string()
                    };
                    let _ = writeln!(
                        page,
                        ".TP\n\\fB{}\\fR = {}\n{}",
                        esc(key),
                        esc(&default),
                        esc(&comment.join(" "))
                    );
                    seen.push(full);
                }
                comment.clear();
            }
            None if commented && !text.is_empty() => comment.push(text),
            None => {
                // A blank line ends a comment that belongs to no key (the file's head).
                if line.is_empty() {
                    comment.clear();
                }
            }
        }
    }
}

const SECTIONS: &str = r#".SH EXIT STATUS
.TP
\fB0\fR
Success. For \fBstatus\fR: every job is OK (the monitoring-plugin convention).
.TP
\fB1\fR
A job, a restore or a prune failed; output could not be written; \fBnotify \-\-test\fR
could not reach a target (or none is configured). For \fBstatus\fR: WARNING, a job's
last run failed.
.TP
\fB2\fR
For \fBstatus\fR: CRITICAL, a job is overdue or stale, or a server snaprotd stopped
was not started again.
.TP
\fB3\fR
For \fBstatus\fR: UNKNOWN, the state directory (or, with \fB\-\-provider\fR, the
provider) cannot be read.
.TP
\fB78\fR
The configuration (or the token) is not valid: every problem is printed with file,
line, column and key (EX_CONFIG). The unit does not restart on it.
.TP
\fB130\fR, \fB143\fR
\fBonce\fR was interrupted by Ctrl\-C or SIGTERM: running jobs finished their snapshot
or gave up after \fIshutdown_timeout\fR, and every server snaprotd stopped was started
again.
.SH ENVIRONMENT
.TP
\fBSNAPROTD_CONFIG\fR
The configuration file, when \fB\-c\fR is not given (default /etc/snaprotd/snaprotd.toml).
.TP
\fBSNAPROTD_API_TOKEN\fR
The API token, when the configuration names no source and systemd passes no
credential.
.TP
\fBCREDENTIALS_DIRECTORY\fR
Set by systemd: the token is read from its file \fIapi\-token\fR (LoadCredential=).
.TP
\fBSTATE_DIRECTORY\fR
Set by systemd (StateDirectory=): the state directory when [daemon] state_dir is unset.
.TP
\fBNOTIFY_SOCKET\fR, \fBWATCHDOG_USEC\fR
Set by systemd: readiness, status and watchdog messages go there.
.TP
\fBSNAPROTD_LOG\fR
A log filter (for example \fBdebug\fR, or \fBinfo,snaprotd=trace\fR); it overrides
\fB\-q\fR and \fB\-v\fR.
.TP
\fBNO_COLOR\fR
When set and not empty, log lines on a terminal are not coloured.
.TP
\fBCOMPLETE\fR
Set by the shell completion scripts when they ask snaprotd for completions.
.SH FILES
.TP
\fI/etc/snaprotd/snaprotd.toml\fR
The configuration (a commented example is installed; kept across upgrades).
.TP
\fI/etc/snaprotd/token\fR
The API token, alone on one line, mode 0600. The unit hands it to the daemon as the
credential \fIapi\-token\fR; commands run by root read it when no other source is set.
.TP
\fI/var/lib/snaprotd/\fR
The state directory: \fIruns/\fR (the last run of each job), \fIstopped/\fR (servers
snaprotd stopped and has not started yet), \fIlocks/\fR (one lock per server),
\fIlock\fR (the daemon's), \fIknown\-jobs.json\fR (when each job was first scheduled),
\fIcounters.json\fR (the metrics' counters, which every process adds to),
\fIlast\-reload.json\fR (the daemon's last reload), \fItainted/\fR (snapshots still in
progress when their server had to start).
.TP
\fI/lib/systemd/system/snaprotd.service\fR
The unit (Type=notify, DynamicUser=yes, hardened).
.SH SIGNALS
.TP
\fBSIGHUP\fR
The daemon reloads its configuration (systemctl reload): a bad file is logged, the
old one kept, and STATUS= says the reload failed until a good one.
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
No new job starts; running jobs may finish their snapshot for up to
\fIshutdown_timeout\fR; then every server snaprotd stopped is started again, and the
process exits (the daemon 0, \fBonce\fR 143 or 130).
.SH JSON OUTPUT
Every \fB\-\-json\fR output is one JSON object whose first field is \fBversion\fR (now 1;
it changes only when a field changes meaning or goes away; new fields may come
without it). Times are RFC 3339 in UTC, to the second (2026\-11\-24T02:30:00Z). Lists
are of objects, never of tuples. A snapshot is {id, name, server, status, size_mb,
created_at, description}.
.TP
\fBstatus\fR
\fIstatus\fR (ok, warning, critical, unknown), \fIjobs\fR (per job: job, policy, server,
last_run, last_success, next_fire, overdue; with \fB\-\-provider\fR newest_snapshot and
stale), \fIservers_stopped\fR and \fIfreezes_left\fR; when unknown, \fIerror\fR.
.TP
\fBcheck\fR
\fIok\fR, \fIconfig\fR, \fIwarnings\fR (each {file, line, column, key, message}),
\fIpolicies\fR (each with \fIservers\fR, the ids; \fIserver_patterns\fR, the names and
globs as written; \fImatched_servers\fR, each {id, name} the patterns match now, or
{error} when the servers cannot be listed, or null without patterns;
\fIkeep\fR and \fIkeep_total\fR; \fIpre_snapshot\fR and \fIpost_snapshot\fR, each a
command as a list, or null; \fIping\fR, its ping_url's scheme and host only, or null),
\fInotify\fR {webhook (scheme and host only), command}; or \fIerrors\fR, each {file,
line, column, key, message} (and exit 78).
.TP
\fBonce\fR
\fIruns\fR, each {job, policy, server, result (ok, failed, skipped), scheduled_for,
started_at, finished_at, seconds, snapshot_name, error, skipped, outcome}; with
\fB\-\-dry\-run\fR \fIplans\fR, each {job, ok, stop_server, name, adopt, make_room,
prune_after, kept_by, keep, hooks}, a deletion being {snapshot, reason, why} (reason:
beyond_keep, failed, tainted, make_room; why: the same in words), \fIkept_by\fR the
tiers that keep the new snapshot, each {tier, period}, \fIkeep\fR what stays besides
it, each {snapshot, kept_by}; hooks {pre_snapshot, post_snapshot} (each a command as a
list, or null), null when no hook would run. A deletion in \fIoutcome\fR has
{snapshot, reason, why} too.
.TP
\fBlist\fR
\fIsnapshots\fR: a snapshot with \fIowner\fR, \fIpolicy\fR and \fIorphan_of\fR.
.TP
\fBnext\fR
\fIfires\fR, each {at, policy, timezone, servers}.
.TP
\fBcoverage\fR
\fIjobs\fR, each {job, policy, server, timezone, keep, days}, a day being {date (in
the policy's zone), kept (the fire times of the restore points held at its end,
oldest first)}; \fIkeep\fR is a number, or an object of tiers.
.TP
\fBrestore\fR, \fBprune\fR
what was restored (and waited for); \fIdry_run\fR and \fIorphans\fR, each with its
result.
.TP
\fBnotify \-\-test\fR
\fItargets\fR, each {target, ok, error}: target is "webhook", "command" or "ping
(success)" with the URL's scheme and host only (or the command's program), error null
when ok.
.SH NOTIFICATIONS
With [notify] \fIwebhook_url\fR or \fIcommand\fR set, a run that fails, and the first
success after a failed run, sends a notice: POSTed as JSON to the webhook, and on the
command's stdin. The notice is one JSON object: \fBversion\fR (1; it changes only when a
field changes meaning or goes away), \fBjob\fR (policy@server), \fBpolicy\fR,
\fBserver\fR, \fBsnapshot\fR ({id, name} of the snapshot made, adopted or being made,
id null when the provider gave none; or null), \fBoutcome\fR (failed or recovered),
\fBerror\fR (text, null unless failed), \fBduration\fR (the run's seconds), \fBtime\fR
(when the run ended, RFC 3339 in UTC, to the second) and \fBtest\fR (true only in the
sample of \fBnotify \-\-test\fR, which is shaped as a recovered notice).
.PP
A policy's \fIping_url\fR is pinged healthchecks.io style, a fire of the policy (its
jobs on all its servers) being one run of the check: a POST to \fIping_url\fR/start
when the fire's first job starts, to \fIping_url\fR/fail when any job of it fails (the
body names the job, its snapshot and the error), to \fIping_url\fR when a job succeeds
while none of the fire has failed (after a /fail, the fire's later successes send
nothing).
.PP
Sending never delays or fails a run: notices and pings wait in a queue of at most 256
(more are dropped with a warning counting them), and are delivered in order per target,
each attempt within [notify] \fItimeout\fR, up to \fImax_attempts\fR, the wait doubling
from \fIretry_backoff\fR. \fBonce\fR, and the daemon when it stops, wait for them all
together at most \fImax_attempts\fR times \fItimeout\fR plus the waits between attempts
(at most 60s; 60s with the defaults) and say how many were not delivered. URLs are
secrets, like the token: output and logs show their scheme and host only.
"#;

const SEE_ALSO: &str = ".SH SEE ALSO\n\\fBsystemctl\\fR(1), \\fBjournalctl\\fR(1)\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_roff() {
        assert_eq!(esc(".hidden"), "\\&.hidden");
        assert_eq!(esc("a\\b-c"), "a\\eb\\-c");
    }
}
