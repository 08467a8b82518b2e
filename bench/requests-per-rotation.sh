#!/usr/bin/env bash
# Counts the provider requests of one rotation, as the simulator sees them:
# a plain policy, and one with stop_server, each with a full cap (so it makes room
# and prunes). Usage: bench/requests-per-rotation.sh   (builds the release binary)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q
bin=target/release/snaprotd
dir=$(mktemp -d)
trap 'kill $sim_pid 2>/dev/null || true; rm -rf "$dir"' EXIT
export SNAPROTD_API_TOKEN=bench-token
"$bin" sim --token "$SNAPROTD_API_TOKEN" --listen 127.0.0.1:0 --servers 1,2 --create-time 3s --transition-time 1s \
    >"$dir/sim.out" 2>/dev/null &
sim_pid=$!
until [ -s "$dir/sim.out" ]; do sleep 0.05; done
base=$(head -n1 "$dir/sim.out")
control=${base%/api/v1}/_sim

for server in 1 2; do
    for i in 1 2 3 4 5; do
        curl -sf -X POST "$control/snapshots" -H 'Content-Type: application/json' \
            -d "{\"server_id\": $server, \"name\": \"rot$server-2020010${i}-0000\", \"created_at\": \"2020-01-0${i}T00:00:00Z\"}" >/dev/null
    done
done

cat >"$dir/snaprotd.toml" <<TOML
[api]
base_url = "$base"
[daemon]
state_dir = "$dir/state"
[defaults]
poll_interval = "1s"
keep = 5
[[policy]]
name = "rot1"
servers = [1]
schedule = "@daily"
snapshot_name = "{policy}-%Y%m%d-%H%M"
[[policy]]
name = "rot2"
servers = [2]
schedule = "@daily"
stop_server = true
snapshot_name = "{policy}-%Y%m%d-%H%M"
TOML

count() { curl -sf "$control/state" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["requests"]))'; }
for policy in rot1 rot2; do
    before=$(count)
    "$bin" -c "$dir/snaprotd.toml" once --policy "$policy" >"$dir/once.out" 2>"$dir/once.err"
    after=$(count)
    echo "policy $policy: $((after - before)) provider requests ($(grep -o '[0-9]* provider request' "$dir/once.out"))"
    curl -sf "$control/state" | python3 -c '
import json,sys
reqs=json.load(sys.stdin)["requests"][-'"$((after - before))"':]
from collections import Counter
for k,v in Counter(r["method"]+" "+r["path"].split("?")[0].rstrip("0123456789/").rstrip("/") for r in reqs).most_common(): print("   %3d  %s" % (v,k))'
done
