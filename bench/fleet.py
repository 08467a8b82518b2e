#!/usr/bin/env python3
"""Fleet benchmark: N servers firing together against a rate-limited simulator.

For fleets of 100, 1,000 and 10,000 servers (or the sizes given as arguments) runs one
rotation of every server at once (`snaprotd once`, the same job runner as the daemon)
against `snaprotd sim --rate-limit 50 --create-time 5s`, and prints requests per
rotation, wall time against the ideal (2 requests per server / limit + one creation
time), the number of 429 answers, and the peak memory and CPU time of snaprotd.

Usage: bench/fleet.py [SIZES...]
"""
import json, os, resource, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "snaprotd")
TOKEN = "bench-token"
LIMIT = 50.0
CREATE = 5.0


def run(n, tmp):
    out = open(os.path.join(tmp, f"sim-{n}.out"), "w+")
    sim = subprocess.Popen([BIN, "sim", "--listen", "127.0.0.1:0", "--servers", f"1-{n}",
                            "--create-time", f"{CREATE:.0f}s", "--rate-limit", str(LIMIT)],
                           stdout=out, stderr=subprocess.DEVNULL, env={**os.environ, "SNAPROTD_API_TOKEN": TOKEN})
    try:
        while True:
            out.seek(0)
            base = out.readline().strip()
            if base:
                break
            time.sleep(0.02)
        config = os.path.join(tmp, f"fleet-{n}.toml")
        with open(config, "w") as f:
            f.write(f'[api]\nbase_url = "{base}"\nmax_requests_per_second = {LIMIT:.0f}\nrequest_timeout = "60s"\n'
                    f'[daemon]\nstate_dir = "{tmp}/state-{n}"\nmax_concurrent_jobs = {n}\n'
                    f'[defaults]\npoll_interval = "2s"\nwait_timeout = "30m"\n'
                    f'[[policy]]\nname = "fleet"\nservers = [{", ".join(str(i) for i in range(1, n + 1))}]\n'
                    f'schedule = "@yearly"\nkeep = 2\n')
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
        state = json.load(urllib.request.urlopen(base.replace("/api/v1", "/_sim/state")))
        reqs = state["requests"]
        n429 = sum(1 for x in reqs if x["status"] == 429)
        ideal = 2 * n / LIMIT + CREATE
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        print(f"{n:>6} servers: {ok}/{n} ok, {len(reqs) / n:.2f} requests/rotation ({len(reqs)} total), "
              f"wall {wall:.1f} s vs ideal {ideal:.1f} s ({wall / ideal:.2f}x), {n429} x 429, "
              f"peak RSS {peak_kb / 1024:.1f} MB, CPU {cpu:.1f} s", flush=True)
    finally:
        sim.terminate()


def main():
    subprocess.run(["cargo", "build", "--release", "--locked", "-q"], cwd=ROOT, check=True)
    sizes = [int(a) for a in sys.argv[1:]] or [100, 1000, 10000]
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            run(n, tmp)


if __name__ == "__main__":
    main()
