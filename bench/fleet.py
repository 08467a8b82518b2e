#!/usr/bin/env python3
"""Fleet benchmark: N servers firing together against a rate-limited simulator.

For fleets of 100, 1,000 and 10,000 servers (or the sizes given) runs one rotation of
every server at once (`snaprotd once`, the same job runner as the daemon) against
`snaprotd sim --rate-limit RATE [--rate-burst BURST] --create-time 5s`, and prints
requests per rotation, failed rotations, wall time against the ideal (2 requests per
server / the provider's rate + one creation time), the number of 429 answers, and the
peak memory and CPU time of snaprotd. With --old, every server starts with one
snapshot of the policy (keep = 1), so each rotation needs a create and a delete.

Usage: bench/fleet.py [--rate 50] [--burst N] [--ceiling N] [--old] [SIZES...]
  --ceiling sets [api] max_requests_per_second (default: unset, the budget finds the
  provider's rate). The small-bucket provider of the adaptive budget:
  bench/fleet.py --rate 20 --burst 5 --old 200
"""
import argparse, json, os, resource, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "snaprotd")
TOKEN = "bench-token"
CREATE = 5.0


def run(n, tmp, args):
    out = open(os.path.join(tmp, f"sim-{n}.out"), "w+")
    sim_args = [BIN, "sim", "--listen", "127.0.0.1:0", "--servers", f"1-{n}",
                "--create-time", f"{CREATE:.0f}s", "--rate-limit", str(args.rate)]
    if args.burst:
        sim_args += ["--rate-burst", str(args.burst)]
    sim = subprocess.Popen(sim_args, stdout=out, stderr=subprocess.DEVNULL,
                           env={**os.environ, "SNAPROTD_API_TOKEN": TOKEN})
    try:
        while True:
            out.seek(0)
            base = out.readline().strip()
            if base:
                break
            time.sleep(0.02)
        control = base.replace("/api/v1", "/_sim")
        if args.old:
            for i in range(1, n + 1):
                body = json.dumps({"server_id": i, "name": "fleet-20200101-0000",
                                   "created_at": "2020-01-01T00:00:00Z"}).encode()
                req = urllib.request.Request(control + "/snapshots", data=body,
                                             headers={"Content-Type": "application/json"})
                urllib.request.urlopen(req).read()
        ceiling = f"max_requests_per_second = {args.ceiling}\n" if args.ceiling else ""
        config = os.path.join(tmp, f"fleet-{n}.toml")
        with open(config, "w") as f:
            f.write(f'[api]\nbase_url = "{base}"\n{ceiling}request_timeout = "60s"\n'
                    f'[daemon]\nstate_dir = "{tmp}/state-{n}"\nmax_concurrent_jobs = {n}\n'
                    f'[defaults]\npoll_interval = "2s"\nwait_timeout = "30m"\n'
                    f'[[policy]]\nname = "fleet"\nservers = [{", ".join(str(i) for i in range(1, n + 1))}]\n'
                    f'schedule = "@yearly"\nkeep = {1 if args.old else 2}\n'
                    f'snapshot_name = "{{policy}}-%Y%m%d-%H%M"\n')
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        outf = open(os.path.join(tmp, f"once-{n}.json"), "w+")
        p = subprocess.Popen([BIN, "once", "-c", config, "--json"], env={**os.environ, "SNAPROTD_API_TOKEN": TOKEN,
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
        reports = json.load(outf)
        ok = sum(1 for x in reports if x["ok"])
        state = json.load(urllib.request.urlopen(control + "/state"))
        reqs = [x for x in state["requests"] if not x["path"].startswith("/_sim")]
        n429 = sum(1 for x in reqs if x["status"] == 429)
        per_server = sum(1 for x in reqs if x["method"] == "GET" and "server_id=" in x["path"])
        account = sum(1 for x in reqs if x["method"] == "GET" and x["path"].startswith("/snapshots/")
                      and "server_id=" not in x["path"])
        ideal = 2 * n / args.rate + CREATE
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        print(f"{n:>6} servers: {ok}/{n} ok, {n - ok} failed, {len(reqs) / n:.2f} requests/rotation ({len(reqs)} total), "
              f"wall {wall:.1f} s vs ideal {ideal:.1f} s ({wall / ideal:.2f}x), {n429} x 429, "
              f"peak RSS {peak_kb / 1024:.1f} MB, CPU {cpu:.1f} s; listings: {account} account-wide pages, "
              f"{per_server} per-server", flush=True)
        if args.timeline:
            timeline(reqs)
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
    parser.add_argument("--timeline", action="store_true", help="print the requests of each second")
    parser.add_argument("sizes", type=int, nargs="*", default=[100, 1000, 10000])
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "--locked", "-q"], cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            run(n, tmp, args)


if __name__ == "__main__":
    main()
