#!/bin/bash
# Compares benchmark 1 (`bench overhead`) of several builds, alternating
# them round by round so that the machine's drift lands on every side:
#
#   host/benches/compare.sh ROUNDS /path/to/bench-A /path/to/bench-B ...
#
# Build a bench binary with `cargo bench -p dynhost --bench bench --no-run`
# (it prints its path) and copy it aside before building the next commit.
# Prints, per build, the medians over all rounds of the ratio dynhost/bare,
# dynhost's µs/key, the coordinator's and the workers' CPU µs/key, the
# steps' wall time per key by op (emit, work, collect), the bare loop on as
# many threads, and the sandbox-only loop (Runtime::run_step without the executor).
set -euo pipefail
rounds=$1
shift
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
# The bench finds its guests from the crate's directory; the binaries may
# be named relative to where this was started.
bins=()
for bin in "$@"; do
    bins+=("$(realpath "$bin")")
done
set -- "${bins[@]}"
cd "$(dirname "$0")/.."
for _ in $(seq "$rounds"); do
    for bin in "$@"; do
        "$bin" overhead 2>&1 | grep -E "^   round|sandbox only" | sed "s|^|$bin |" >>"$raw"
    done
done
python3 - "$raw" "$@" <<'PY'
import re, statistics, sys
raw, bins = sys.argv[1], sys.argv[2:]
rows, sandbox = {}, {}
for line in open(raw):
    b = line.split()[0]
    m = re.search(r"on 1 thread, ([\d.]+) on \d+; dynhost ([\d.]+) us/key \(coordinator ([\d.]+), workers ([\d.]+); "
                  r"step wall per key: emit ([\d.]+), work ([\d.]+), collect ([\d.]+)\); ratio ([\d.]+)", line)
    if m:
        rows.setdefault(b, []).append([float(m.group(i)) for i in (8, 2, 3, 4, 1, 5, 6, 7)])
    s = re.search(r"sandbox only.*: ([\d.]+) us/key", line)
    if s:
        sandbox.setdefault(b, []).append(float(s.group(1)))
for b in bins:
    r = rows.get(b, [])
    if not r:
        continue
    med = lambda i: statistics.median(x[i] for x in r)
    sb = statistics.median(sandbox.get(b, [0.0]))
    print(f"{b}: {len(r)} rounds, median ratio {med(0):.3f}, dynhost {med(1):.2f} us/key "
          f"(coordinator {med(2):.2f}, workers {med(3):.2f}; step wall emit {med(5):.2f}, "
          f"work {med(6):.2f}, collect {med(7):.2f}), bare {med(4):.2f}, sandbox only {sb:.2f}")
PY
