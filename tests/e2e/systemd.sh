#!/usr/bin/env bash
# End to end under a booted systemd: the Debian package installed in a minimal Debian
# root booted with systemd-nspawn (systemd as PID 1), pointed at the simulator on the
# host's loopback (the container shares the host's network).
#
# Checks: no failed unit after install; `systemctl start` → active with a STATUS= text;
# fires create and prune snapshots; `systemctl reload` keeps it active; the journal
# carries the structured fields and never the token; `systemctl stop` → Result=success
# with no server left stopped; an upgrade keeps the edited configuration; purge is clean.
#
# Usage: tests/e2e/systemd.sh   (as root; the root file system is built once, then reused)
set -euo pipefail
cd "$(dirname "$0")/../.."

export NSROOT=${NSROOT:-/var/tmp/snaprotd-nsroot-2} NSNAME=${NSNAME:-snaprotd-e2e}
ns() { bash tests/e2e/nspawn-boot.sh "$@"; }
inside() { ns exec "$@"; }

passed=0 failed=0
check() { # check "what" command...
    local what=$1; shift
    if "$@"; then passed=$((passed + 1)); echo "ok   $what"; else failed=$((failed + 1)); echo "FAIL $what"; fi
}
# eventually SECONDS command...: retries until the command succeeds.
eventually() {
    local until=$(( $(date +%s) + $1 )); shift
    until "$@" >/dev/null 2>&1; do [ "$(date +%s)" -lt "$until" ] || return 1; sleep 0.5; done
}

work=$(mktemp -d)
sim_pid=
cleanup() {
    [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null || true
    ns stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

deb=$(packaging/build-deb.sh)
echo "package: $deb ($(stat -c %s "$deb") bytes)"
ns bootstrap >/dev/null
ns stop >/dev/null 2>&1 || true

# The simulator on the host's loopback.
token="e2e-token-$RANDOM$RANDOM"
target/release/snaprotd sim --token "$token" --listen 127.0.0.1:0 --servers 101,102 \
    --create-time 2s --transition-time 500ms >"$work/sim.out" 2>"$work/sim.err" &
sim_pid=$!
until [ -s "$work/sim.out" ]; do sleep 0.05; done
base=$(head -n1 "$work/sim.out")
control=${base%/api/v1}/_sim
sim_state() { curl -sf "$control/state"; }
count() { sim_state | python3 -c "import json,sys; print(sum(1 for r in json.load(sys.stdin)['requests'] if $1))"; }

ns start
cp "$deb" "$NSROOT/var/tmp/snaprotd.deb"
inside dpkg -i /var/tmp/snaprotd.deb >/dev/null
check "installing leaves no failed unit" test -z "$(inside systemctl --failed --no-legend --plain)"
check "the unit is installed, not started" test "$(inside systemctl is-active snaprotd || true)" = inactive
check "systemd-analyze verify is clean" test -z "$(inside systemd-analyze verify snaprotd.service 2>&1)"
check "the man page is installed" test -s "$NSROOT/usr/share/man/man1/snaprotd.1.gz"
check "the configuration is a conffile" inside grep -qx /etc/snaprotd/snaprotd.toml /var/lib/dpkg/info/snaprotd.conffiles

# The operator's part: the token and the policies.
printf '%s\n' "$token" >"$NSROOT/etc/snaprotd/token"
chmod 600 "$NSROOT/etc/snaprotd/token"
cat >>"$NSROOT/etc/snaprotd/snaprotd.toml" <<TOML

# e2e: edited by the operator
[[policy]]
name = "fast"
servers = [101]
schedule = "*/4 * * * * *"
keep = 2
snapshot_name = "{policy}-%Y%m%d-%H%M%S"
poll_interval = "500ms"

[[policy]]
name = "cold"
servers = [102]
schedule = "*/6 * * * * *"
keep = 1
stop_server = true
snapshot_name = "{policy}-%Y%m%d-%H%M%S"
poll_interval = "500ms"
TOML
sed -i "s|^base_url = .*|base_url = \"$base\"|" "$NSROOT/etc/snaprotd/snaprotd.toml"

inside systemctl enable --now snaprotd >/dev/null 2>&1 || true
check "systemctl start: active" eventually 20 inside systemctl is-active --quiet snaprotd
status_text=$(inside systemctl show -p StatusText --value snaprotd)
check "STATUS= text is shown: $status_text" test -n "$status_text"
at_least() { test "$(count "$2")" -ge "$1"; }
check "fires create snapshots" eventually 40 at_least 4 'r["method"]=="POST" and r["path"]=="/snapshots/"'
check "fires prune snapshots" eventually 40 at_least 1 'r["method"]=="DELETE"'
check "a stop_server policy stopped and started its server" eventually 30 at_least 1 'r["path"]=="/servers/102/start/"'


inside systemctl reload snaprotd
check "systemctl reload keeps it active" eventually 10 inside systemctl is-active --quiet snaprotd
reloaded() { grep -q 'configuration reloaded' <<<"$(inside journalctl -u snaprotd --no-pager)"; }
check "the reload is in the journal" eventually 10 reloaded
check "it keeps firing after the reload" eventually 20 at_least "$(( $(count 'r["method"]=="POST" and r["path"]=="/snapshots/"') + 2 ))" 'r["method"]=="POST" and r["path"]=="/snapshots/"' 

journal=$(inside journalctl -u snaprotd -o json --no-pager)
has_field() { grep -q "\"$1\":" <<<"$journal"; }
for field in POLICY SERVER_ID JOB_ID SNAPSHOT_ID SNAPSHOT_NAME; do
    check "the journal carries $field" has_field "$field"
done
no_token() { ! grep -q "$token" <<<"$journal"; }
check "the journal never holds the token" no_token
# This boot only: the Debian root, and its journal, are kept between runs.
errors=$(inside journalctl -b -u snaprotd -p err --no-pager -q)
check "journalctl -p err is empty when nothing failed" test -z "$errors"
[ -z "$errors" ] || echo "$errors" | head -20

inside systemctl stop snaprotd
check "systemctl stop: Result=success" test "$(inside systemctl show -p Result --value snaprotd)" = success
check "no server left stopped" sh -c "curl -sf $control/state | python3 -c \"import json,sys; s=json.load(sys.stdin)['servers']; sys.exit(any(v['status']!='running' for v in s))\""

# Upgrade: the same package again keeps the edited configuration.
inside dpkg -i /var/tmp/snaprotd.deb >/dev/null
check "an upgrade keeps the edited configuration" grep -q "e2e: edited by the operator" "$NSROOT/etc/snaprotd/snaprotd.toml"
check "the state directory exists before purge" test -d "$NSROOT/var/lib/private/snaprotd"

inside dpkg --purge snaprotd >/dev/null
check "purge removes the state" test ! -e "$NSROOT/var/lib/private/snaprotd" -a ! -e "$NSROOT/var/lib/snaprotd"
check "purge removes the configuration and token" test ! -e "$NSROOT/etc/snaprotd"
check "purge leaves no failed unit" test -z "$(inside systemctl --failed --no-legend --plain)"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
