#!/bin/bash
# Copied from the workplace tool; the root also gets procps (kill, for ExecReload) and man-db (man, for systemd-analyze verify).
# nspawn-boot.sh - boot a real systemd (PID 1) in a systemd-nspawn container on a
# host whose PID 1 is NOT systemd (no system bus, no machined, hybrid cgroups).
#
# Usage:
#   nspawn-boot.sh bootstrap            # apt install + debootstrap rootfs (once, ~45 s)
#   nspawn-boot.sh start                # boot container in background (~1.5 s)
#   nspawn-boot.sh exec CMD [ARGS...]   # run CMD inside (systemctl, journalctl, ...)
#   nspawn-boot.sh install-unit UNIT_FILE [FILE:DEST ...]  # copy unit (+files), daemon-reload, enable --now
#   nspawn-boot.sh selftest             # prove Type=notify works (notify-test.service)
#   nspawn-boot.sh stop                 # clean shutdown (SIGTERM -> container halts)
#   nspawn-boot.sh status               # is it running?
#
# Examples:
#   nspawn-boot.sh exec systemctl status mydaemon --no-pager
#   nspawn-boot.sh exec journalctl -u mydaemon --no-pager
#   nspawn-boot.sh install-unit ./mydaemon.service ./target/release/mydaemon:/usr/local/bin/mydaemon
# After stop, the persistent journal can still be read from the host:
#   journalctl -D /var/tmp/nsroot/var/log/journal -u mydaemon --no-pager
set -euo pipefail

ROOT=${NSROOT:-/var/tmp/nsroot}
NAME=${NSNAME:-nsroot}
STATE=${NSSTATE:-/run/nspawn-boot-$NAME}      # pid file + console log live here
MIRROR=${NSMIRROR:-$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null)}  # the host's own apt source
SUITE=${NSSUITE:-bookworm}

die() { echo "nspawn-boot: $*" >&2; exit 1; }

nspawn_pid() {
    [ -f "$STATE/nspawn.pid" ] || return 1
    local p; p=$(cat "$STATE/nspawn.pid")
    kill -0 "$p" 2>/dev/null || return 1
    echo "$p"
}

# PID (host view) of the container's systemd = direct child of systemd-nspawn
leader_pid() {
    local p c
    p=$(nspawn_pid) || return 1
    for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do
        [ "$(cat /proc/"$c"/comm 2>/dev/null)" = systemd ] && { echo "$c"; return 0; }
    done
    return 1
}

cexec() {
    local l; l=$(leader_pid) || die "container not running"
    # -a = all namespaces (mnt, pid, uts, ipc, net, cgroup); run inside the container root
    nsenter -t "$l" -a env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        TERM=dumb SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"
}

cleanup_cgroups() {
    # nspawn --keep-unit with the host at cgroup "/" creates /payload in each
    # hierarchy and never removes it; delete leftovers depth-first (only empty dirs).
    local h
    for h in /sys/fs/cgroup/systemd/payload /sys/fs/cgroup/unified/payload; do
        [ -d "$h" ] && find "$h" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
}

cmd_bootstrap() {
    command -v systemd-nspawn >/dev/null && command -v debootstrap >/dev/null || {
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q systemd-container debootstrap
    }
    # debootstrap removes its own work folder when it finishes; a root that still has
    # it was cut short and is made again.
    if [ -d "$ROOT/debootstrap" ]; then
        rm -rf "$ROOT"
    fi
    if [ ! -x "$ROOT/lib/systemd/systemd" ]; then
        debootstrap --variant=minbase --include=systemd,dbus,procps,man-db "$SUITE" "$ROOT" "$MIRROR"
    fi
    echo "$NAME" > "$ROOT/etc/hostname"
    mkdir -p "$ROOT/var/log/journal"          # persistent journal (readable from host after stop)
    rm -f "$ROOT"/var/cache/apt/archives/*.deb  # ~40 MB of leftover .debs
    # getty on a container console is useless noise
    rm -f "$ROOT/etc/systemd/system/getty.target.wants/getty@tty1.service"
    # Type=notify smoke-test unit (enabled, starts at boot)
    cat > "$ROOT/etc/systemd/system/notify-test.service" <<'EOF'
[Unit]
Description=Type=notify smoke test (shell + systemd-notify)
StartLimitIntervalSec=0

[Service]
Type=notify
NotifyAccess=all
ExecStart=/bin/sh -c 'echo "notify-test: starting"; sleep 1; date +%%s.%%N > /var/tmp/notify-test.started; systemd-notify --ready --status="up and running"; echo "notify-test: READY sent"; exec sleep infinity'
TimeoutStartSec=20

[Install]
WantedBy=multi-user.target
EOF
    ln -sf /etc/systemd/system/notify-test.service \
        "$ROOT/etc/systemd/system/multi-user.target.wants/notify-test.service"
    du -sh "$ROOT"
}

cmd_start() {
    [ -x "$ROOT/lib/systemd/systemd" ] || die "no rootfs at $ROOT (run: $0 bootstrap)"
    nspawn_pid >/dev/null && die "already running (pid $(nspawn_pid))"
    mkdir -p "$STATE"
    cleanup_cgroups
    # --register=no : no machined on host (else "Failed to open system bus")
    # --keep-unit   : don't ask host systemd for a scope (same error otherwise)
    # --console=read-only : boot messages go to $STATE/console.log
    setsid systemd-nspawn -D "$ROOT" -M "$NAME" -b \
        --register=no --keep-unit --console=read-only \
        ${NSPAWN_EXTRA_ARGS:-} \
        </dev/null >"$STATE/console.log" 2>&1 &
    echo $! > "$STATE/nspawn.pid"
    local i l=""
    for i in $(seq 1 100); do
        l=$(leader_pid) && break
        nspawn_pid >/dev/null || { cat "$STATE/console.log"; die "nspawn exited"; }
        sleep 0.1
    done
    [ -n "$l" ] || die "container systemd did not appear"
    # wait until PID 1's private bus socket answers ("offline" = not reachable yet),
    # then until boot has finished (running or degraded)
    local st=""
    for i in $(seq 1 300); do
        st=$(cexec systemctl is-system-running 2>/dev/null || true)
        case "$st" in ""|offline|unknown) sleep 0.1 ;; *) break ;; esac
    done
    st=$(timeout 60 nsenter -t "$l" -a systemctl is-system-running --wait 2>/dev/null || true)
    echo "nspawn pid $(nspawn_pid), container systemd pid $l, state: $st"
}

cmd_stop() {
    local p
    if p=$(nspawn_pid); then
        kill -TERM "$p"                       # nspawn forwards as SIGRTMIN+3 -> clean halt
        for _ in $(seq 1 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$p" 2>/dev/null; then kill -TERM "$p"; sleep 1; fi   # 2nd TERM = immediate
        if kill -0 "$p" 2>/dev/null; then kill -KILL "$p"; fi
        echo "stopped (nspawn pid $p)"
    else
        echo "not running"
    fi
    rm -f "$STATE/nspawn.pid"
    cleanup_cgroups
}

cmd_install_unit() {
    local unit=$1; shift
    local f src dst
    for f in "$@"; do
        src=${f%%:*}; dst=${f#*:}
        install -D -m 0755 "$src" "$ROOT$dst"
    done
    install -D -m 0644 "$unit" "$ROOT/etc/systemd/system/$(basename "$unit")"
    if nspawn_pid >/dev/null; then
        cexec systemctl daemon-reload
        cexec systemctl enable --now "$(basename "$unit")"
    fi
}

cmd_selftest() {
    cexec systemctl is-system-running || true
    cexec systemctl restart notify-test
    cexec systemctl status notify-test --no-pager || true
    cexec journalctl -u notify-test -b --no-pager -n 8
    [ "$(cexec systemctl show -p StatusText --value notify-test)" = "up and running" ] \
        && echo "SELFTEST OK: Type=notify service reached READY" \
        || die "SELFTEST FAILED"
}

case "${1:-}" in
    bootstrap)    cmd_bootstrap ;;
    start)        cmd_start ;;
    stop)         cmd_stop ;;
    exec)         shift; cexec "$@" ;;
    install-unit) shift; cmd_install_unit "$@" ;;
    selftest)     cmd_selftest ;;
    status)       if l=$(leader_pid); then echo "running: nspawn $(nspawn_pid), leader $l"; else echo "not running"; exit 1; fi ;;
    *)            sed -n '2,20p' "$0"; exit 2 ;;
esac
