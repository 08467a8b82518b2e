#!/usr/bin/env python3
"""Daemon benchmark: idle wake-ups, memory, start-up time and fire delay.

Prints:
  - idle wake-ups per second with 1,000 jobs and no fire due (context switches of all
    the daemon's threads over 20 s), without and with a systemd watchdog (WatchdogSec=60s);
  - resident memory with 10,000 servers x 2 policies, after READY=1;
  - time from process start to READY=1 (1,000 and 20,000 jobs);
  - delay from a scheduled instant to the first request the simulator sees, over 200
    fires of a job firing every second (p99 is the 2nd largest).

Usage: bench/daemon.py   (builds the release binary first)
"""
import json, os, socket, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "snaprotd")
TOKEN = "bench-token"


def build():
    subprocess.run(["cargo", "build", "--release", "--locked", "-q"], cwd=ROOT, check=True)


def start_sim(tmp, servers="1", create_time="1s"):
    out = open(os.path.join(tmp, f"sim-{time.monotonic_ns()}.out"), "w+")
    p = subprocess.Popen([BIN, "sim", "--token", TOKEN, "--listen", "127.0.0.1:0", "--servers", servers, "--create-time", create_time],
                         stdout=out, stderr=subprocess.DEVNULL, env={**os.environ, "SNAPROTD_API_TOKEN": TOKEN})
    while True:
        out.seek(0)
        line = out.readline().strip()
        if line:
            return p, line
        time.sleep(0.02)


def write_config(tmp, base, policies):
    path = os.path.join(tmp, "snaprotd.toml")
    with open(path, "w") as f:
        f.write(f'[api]\nbase_url = "{base}"\n[daemon]\nstate_dir = "{tmp}/state"\n'
                f'[defaults]\nsnapshot_name = "{{policy}}-%Y%m%d-%H%M%S"\npoll_interval = "200ms"\n')
        f.write(policies)
    return path


def policy(name, servers, schedule, keep=1):
    ids = ", ".join(str(s) for s in servers)
    return f'[[policy]]\nname = "{name}"\nservers = [{ids}]\nschedule = "{schedule}"\nkeep = {keep}\n'


def start_daemon(tmp, config, extra_env=None):
    sock_path = os.path.join(tmp, f"notify-{time.monotonic_ns()}.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    env = {**os.environ, "SNAPROTD_API_TOKEN": TOKEN, "NOTIFY_SOCKET": sock_path, "SNAPROTD_LOG": "warn"}
    env.update(extra_env or {})
    t0 = time.monotonic()
    p = subprocess.Popen([BIN, "run", "-c", config, "--log", "text"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sock.settimeout(60)
    while True:
        msg = sock.recv(4096).decode()
        if "READY=1" in msg:
            ready = time.monotonic() - t0
            break
    sock.settimeout(None)
    # Keep reading, as systemd does, so the daemon's notifications never block.
    import threading
    threading.Thread(target=lambda: [sock.recv(4096) for _ in iter(int, 1)], daemon=True).start()
    return p, ready, sock


def ctx_switches(pid):
    """Context switches of each of the process's threads, by thread id."""
    counts = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                counts[tid] = sum(int(line.split()[1]) for line in f
                                  if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")))
        except FileNotFoundError:
            pass
    return counts


def woke(before, after):
    """Wake-ups between two readings: threads that ended meanwhile count what they did
    before the first reading only, threads that started count all."""
    return sum(n - before.get(tid, 0) for tid, n in after.items())


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024


def stop(p):
    p.terminate()
    p.wait(timeout=30)


def idle(tmp, base, seconds, extra_env=None, label=""):
    config = write_config(tmp, base, policy("yearly", range(1, 1001), "0 0 1 1 *"))
    p, ready, _ = start_daemon(tmp, config, extra_env)
    time.sleep(2)
    before = ctx_switches(p.pid)
    time.sleep(seconds)
    rate = woke(before, ctx_switches(p.pid)) / seconds
    stop(p)
    print(f"idle wake-ups, 1,000 jobs{label}: {rate:.2f}/s over {seconds} s (start to READY=1: {ready * 1000:.0f} ms)")


def memory(tmp, base):
    servers = range(1, 10001)
    config = write_config(tmp, base, policy("nightly", servers, "30 2 * * *", 2) + policy("weekly", servers, "0 4 * * sun", 1)
                          .replace('name = "weekly"', 'name = "weekly"\nsnapshot_name = "{policy}-%Y%m%d-%H%M"'))
    p, ready, _ = start_daemon(tmp, config)
    time.sleep(1)
    print(f"resident memory, 10,000 servers x 2 policies: {rss_mb(p.pid):.1f} MB (start to READY=1: {ready * 1000:.0f} ms)")
    stop(p)


def delay(tmp, fires):
    """A job firing every second (its snapshot takes 100 ms), for `fires` fires."""
    sim, base = start_sim(tmp, create_time="100ms")
    config = write_config(tmp, base, policy("fast", [1], "* * * * * *", 2))
    p, _, _ = start_daemon(tmp, config)
    control = base.replace("/api/v1", "/_sim/state")
    first_by_fire = {}
    deadline = time.time() + fires + 10
    while len(first_by_fire) < fires + 1 and time.time() < deadline:
        time.sleep(0.5)
        reqs = json.load(urllib.request.urlopen(control))["requests"]
        for r in reqs:
            at = r["at"]
            ts = time.mktime(time.strptime(at[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
            frac = float("0." + at[20:].rstrip("Z").split("+")[0]) if "." in at else 0.0
            t = ts + frac
            # The first request after a fire is that run's step-1 listing.
            scheduled = int(t)
            first_by_fire[scheduled] = min(first_by_fire.get(scheduled, t), t)
    delays = [(t - s) * 1000 for s, t in sorted(first_by_fire.items())][:fires]
    stop(p)
    sim.terminate()
    delays = delays[:fires]
    delays.sort()
    p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
    print(f"fire delay (scheduled instant -> first request at the simulator), {len(delays)} fires: "
          f"median {delays[len(delays) // 2]:.1f} ms, p99 {p99:.1f} ms, max {delays[-1]:.1f} ms")


def main():
    build()
    with tempfile.TemporaryDirectory() as tmp:
        sim, base = start_sim(tmp)
        try:
            idle(tmp, base, 20)
            idle(tmp, base, 20, {"WATCHDOG_USEC": "60000000"}, " (WatchdogSec=60s)")
            memory(tmp, base)
            delay(tmp, 200)
        finally:
            sim.terminate()


if __name__ == "__main__":
    main()
