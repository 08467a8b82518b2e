#!/usr/bin/env python3
"""Fleet benchmark: N servers firing together against a rate-limited simulator.

For fleets of 100, 1,000 and 10,000 servers (or the sizes given) runs one rotation of
every server at once (`snaprotd once`, the same job runner as the daemon) against
`snaprotd sim --rate-limit RATE [--rate-burst BURST] --create-time 5s`, and prints
requests per rotation (changing requests and listing pages apart), failed rotations,
wall time against the ideal (2 requests per server / the provider's rate + one
creation time; 1 request per server without --old), the number of 429 answers, and
the peak memory and CPU time of snaprotd. With --old, every server starts with one
snapshot of the policy (keep = 1), so each rotation needs a create and a delete.

With --baseline, the same fleet is then rotated by a per-server loop against a fresh
simulator — what a cron'd script does: list the server's snapshots, create, list the
server's snapshots every poll interval until done, delete the old one, and on a 429
sleep its Retry-After — and its figures are printed below snaprotd's.

Usage: bench/fleet.py [--rate 50] [--burst N] [--ceiling N] [--old] [--baseline]
                      [--select all|GLOB] [--timeline] [--wrap CMD] [SIZES...]
  SNAPROTD_BIN names the binary (default: target/release/snaprotd), e.g. one built with
  symbols for --wrap.
  --select names the servers by pattern (servers = "all" or ["GLOB"]) instead of ids.
  --ceiling sets [api] max_requests_per_second (default: unset, the budget finds the
  provider's rate). The small-bucket provider of the adaptive budget:
  bench/fleet.py --rate 20 --burst 5 --old 200
"""
import argparse, concurrent.futures, json, os, resource, subprocess, tempfile, time
import urllib.error, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("SNAPROTD_BIN") or os.path.join(ROOT, "target", "release", "snaprotd")
TOKEN = "bench-token"
CREATE = 5.0
POLL = 2.0


def start_sim(n, tmp, args):
    """Starts a simulator of `n` servers; returns (process, API base URL)."""
    out = open(os.path.join(tmp, f"sim-{n}-{time.monotonic_ns()}.out"), "w+")
    sim_args = [BIN, "sim", "--token", TOKEN, "--listen", "127.0.0.1:0", "--servers", f"1-{n}",
                "--create-time", f"{CREATE:.0f}s", "--rate-limit", str(args.rate)]
    if args.burst:
        sim_args += ["--rate-burst", str(args.burst)]
    sim = subprocess.Popen(sim_args, stdout=out, stderr=subprocess.DEVNULL,
                           env={**os.environ, "SNAPROTD_API_TOKEN": TOKEN})
    while True:
        out.seek(0)
        base = out.readline().strip()
        if base:
            break
        time.sleep(0.02)
    if args.old:
        control = base.replace("/api/v1", "/_sim")
        for i in range(1, n + 1):
            body = json.dumps({"server_id": i, "name": "fleet-20200101-0000",
                               "created_at": "2020-01-01T00:00:00Z"}).encode()
            req = urllib.request.Request(control + "/snapshots", data=body,
                                         headers={"Content-Type": "application/json"})
            urllib.request.urlopen(req).read()
    return sim, base


def sim_requests(base):
    state = json.load(urllib.request.urlopen(base.replace("/api/v1", "/_sim") + "/state"))
    return [x for x in state["requests"] if not x["path"].startswith("/_sim")]


def report(label, n, args, reqs, ok, wall, peak_kb=None, cpu=None):
    changing = sum(1 for x in reqs if x["method"] != "GET" and x["status"] != 429)
    listing = sum(1 for x in reqs if x["method"] == "GET" and x["status"] != 429)
    n429 = sum(1 for x in reqs if x["status"] == 429)
    per_server = sum(1 for x in reqs if x["method"] == "GET" and "server_id=" in x["path"] and x["status"] != 429)
    ideal = (2 if args.old else 1) * n / args.rate + CREATE
    extra = ""
    if peak_kb is not None:
        extra = f", peak RSS {peak_kb / 1024:.1f} MB, CPU {cpu:.1f} s"
    print(f"{label} {n:>6} servers: {ok}/{n} ok, {n - ok} failed, {len(reqs) / n:.2f} requests/rotation "
          f"({changing / n:.2f} changing + {listing / n:.2f} listing + {n429 / n:.2f} answered 429), "
          f"wall {wall:.1f} s vs ideal {ideal:.1f} s ({wall / ideal:.2f}x){extra}; "
          f"listings: {listing - per_server} account-wide pages, {per_server} per-server", flush=True)


def servers(n, args):
    """`servers` of the policy: every id (the default), or a pattern (--select)."""
    if args.select == "all":
        return '"all"'
    if args.select:
        return f'["{args.select}"]'
    return f'[{", ".join(str(i) for i in range(1, n + 1))}]'


def run(n, tmp, args):
    sim, base = start_sim(n, tmp, args)
    try:
        ceiling = f"max_requests_per_second = {args.ceiling}\n" if args.ceiling else ""
        config = os.path.join(tmp, f"fleet-{n}.toml")
        with open(config, "w") as f:
            f.write(f'[api]\nbase_url = "{base}"\n{ceiling}request_timeout = "60s"\n'
                    f'[daemon]\nstate_dir = "{tmp}/state-{n}"\nmax_concurrent_jobs = {n}\n'
                    f'[defaults]\npoll_interval = "{POLL:.0f}s"\nwait_timeout = "30m"\n'
                    f'[[policy]]\nname = "fleet"\nservers = {servers(n, args)}\n'
                    f'schedule = "@yearly"\nkeep = {1 if args.old else 2}\n'
                    f'snapshot_name = "{{policy}}-%Y%m%d-%H%M"\n')
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        outf = open(os.path.join(tmp, f"once-{n}.json"), "w+")
        wrap = args.wrap.split() if args.wrap else []
        p = subprocess.Popen(wrap + [BIN, "once", "-c", config, "--json"], env={**os.environ, "SNAPROTD_API_TOKEN": TOKEN,
                             "SNAPROTD_LOG": "warn"}, stdout=outf, stderr=subprocess.DEVNULL)
        peak_kb = 0
        while p.poll() is None:
            try:
                with open(f"/proc/{p.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM"):
                            peak_kb = max(peak_kb, int(line.split()[1]))
            except FileNotFoundError:
                pass
            time.sleep(0.05)
        wall = time.monotonic() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        outf.seek(0)
        ok = sum(1 for x in json.load(outf)["runs"] if x["result"] == "ok")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        reqs = sim_requests(base)
        report("snaprotd        ", n, args, reqs, ok, wall, peak_kb, cpu)
        if args.timeline:
            timeline(reqs)
    finally:
        sim.terminate()
    if args.baseline:
        baseline(n, tmp, args)


def baseline(n, tmp, args):
    """The per-server poll loop of a cron'd script, one server per worker."""
    sim, base = start_sim(n, tmp, args)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    def call(method, path, body=None):
        while True:
            req = urllib.request.Request(base + path, method=method, headers=headers,
                                         data=json.dumps(body).encode() if body else None)
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    text = r.read()
                    return json.loads(text) if text else None
            except urllib.error.HTTPError as e:
                if e.code != 429:
                    raise
                time.sleep(float(e.headers.get("Retry-After") or 1))

    def rotate(server):
        def mine():
            return [s for s in call("GET", f"/snapshots/?server_id={server}")["results"]
                    if s["name"].startswith("fleet-")]
        old = mine()
        new = call("POST", "/snapshots/", {"server_id": server, "name": "fleet-20260101-0000",
                                           "description": "baseline"})
        while True:
            time.sleep(POLL)
            status = {s["id"]: s["status"] for s in mine()}.get(new["id"])
            if status != "in_progress":
                break
        for s in old:
            call("DELETE", f"/snapshots/{s['id']}/")
        return status == "completed"

    try:
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(n, 1000)) as pool:
            ok = sum(1 for r in pool.map(rotate, range(1, n + 1)) if r)
        wall = time.monotonic() - t0
        report("per-server loop ", n, args, sim_requests(base), ok, wall)
    finally:
        sim.terminate()


def timeline(reqs):
    """Prints the requests of each second: creates, deletes, listing pages, 429s."""
    from datetime import datetime
    def at(x):
        return datetime.fromisoformat(x["at"].replace("Z", "+00:00")).timestamp()
    t0 = min(at(x) for x in reqs)
    rows = {}
    for x in reqs:
        kind = "429" if x["status"] == 429 else {"POST": "create", "DELETE": "delete"}.get(
            x["method"], "list" if "server_id=" not in x["path"] else "list1")
        row = rows.setdefault(int(at(x) - t0), {})
        row[kind] = row.get(kind, 0) + 1
    for sec in range(max(rows) + 1):
        row = rows.get(sec, {})
        print(f"  {sec:>4}s " + " ".join(f"{k}={row[k]}" for k in sorted(row)), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=50.0, help="the provider's requests a second")
    parser.add_argument("--burst", type=float, help="the provider's bucket (default: a second's worth)")
    parser.add_argument("--ceiling", type=int, help="[api] max_requests_per_second (default unset)")
    parser.add_argument("--old", action="store_true", help="one old snapshot per server, keep = 1")
    parser.add_argument("--wrap", help='a profiler to run once under, e.g. "heaptrack -o /tmp/once"')
    parser.add_argument("--baseline", action="store_true", help="also run a per-server poll loop")
    parser.add_argument("--select", help='name the servers by pattern: "all" or a glob like "server-*" '
                        "(the simulator names them server-ID); one GET /servers/ listing first")
    parser.add_argument("--timeline", action="store_true", help="print the requests of each second")
    parser.add_argument("sizes", type=int, nargs="*", default=[100, 1000, 10000])
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "--locked", "-q"], cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            run(n, tmp, args)


if __name__ == "__main__":
    main()
