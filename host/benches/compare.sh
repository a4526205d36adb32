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
# many threads, and the sandbox-only loop (Runtime::run_step without the
# executor); then, per build after the first, the median difference of its
# ratio from the first build's in the same round (run next to each other).
#
# Each bench binary builds and uses the trivial guest of the checkout it was
# built from (its crate directory is compiled in): to compare hosts on the
# same op, copy one `target/guests/wasm32-wasip2/release/trivial.wasm` over
# the other's.
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
# Paired: the k-th round of each build against the k-th round of the
# first (run next to each other), so drift that spans a pair cancels out.
first = rows.get(bins[0], [])
for b in bins[1:]:
    pairs = [x[0] - y[0] for x, y in zip(rows.get(b, []), first)]
    if pairs:
        wins = sum(d <= 0 for d in pairs)
        q = statistics.quantiles(pairs, n=4) if len(pairs) > 1 else [pairs[0]] * 3
        print(f"{b} - {bins[0]}: median paired ratio difference {statistics.median(pairs):+.3f} "
              f"(quartiles {q[0]:+.3f} / {q[2]:+.3f}, mean {statistics.mean(pairs):+.3f}) "
              f"over {len(pairs)} pairs ({wins} not worse)")
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
