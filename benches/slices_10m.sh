#!/usr/bin/env bash
# What slices cost: the same 10-million-row f1_macro grading with `takehome score`, without
# slices (--metric/--truth) and through a task that declares nine slices of the hidden rows (four
# bins of a hidden feature column, one slice per label of the truth), side by side in the same
# run. Prints wall time and peak memory (maximum resident set, GNU time) per run, and medians.
#
#   benches/slices_10m.sh [RUNS] [N_ROWS]
#
# Needs a release build (cargo build --release), GNU time, and the bench data of score_10m.sh
# (made here with the python runner image when missing: no pandas on the host needed).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
rows=${2:-10000000}
data=${BENCH_DATA:-/var/tmp/takehome-bench-$rows}
takehome=./target/release/takehome
[ -x "$takehome" ] || { echo "build first: cargo build --release" >&2; exit 2; }
if [ ! -f "$data/pred_labels.csv" ]; then
  image=$(docker images --format '{{.Repository}}:{{.Tag}}' | grep '^takehome/python:' | head -1)
  mkdir -p "$data"
  docker run --rm --network none --user "$(id -u):$(id -g)" -v "$PWD/benches:/benches:ro" -v "$data:/out" "$image" python /benches/make_score_data.py /out "$rows"
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/tasks/bench/starter" "$root/datasets/bench/hidden"
ln -s "$PWD/runner-images" "$root/runner-images"
ln -s "$data/truth_labels.csv" "$root/datasets/bench/hidden/labels.csv"
# A hidden feature column: a number in [0, 1) from each id (the same on every run).
awk -F, 'NR == 1 { print "id,x"; next } { printf "%s,%.4f\n", $1, ($1 * 2654435761 % 1000003) / 1000003 }' "$data/truth_labels.csv" > "$root/datasets/bench/hidden/features.csv"
echo "a bench" > "$root/tasks/bench/brief.md"
cat > "$root/tasks/bench/task.yaml" <<'YAML'
id: bench
title: Slices on ten million rows
kind: model-training
time_box: 1h
image: python
brief: brief.md
dataset: bench
steps:
  - { name: predict, run: python predict.py, inputs: [hidden/features.csv] }
grading:
  output: pred_labels.csv
  truth: hidden/labels.csv
  id: id
  target: label
  metric: f1_macro
  scale: { zero_at: 0.2, full_at: 0.9 }
  slices:
    - { from: hidden/features.csv, column: x, bins: [0.25, 0.5, 0.75] }
    - { column: label, each: true }
YAML

results=$(mktemp)
measure() { # label, command...
  local label=$1; shift
  local log; log=$(mktemp)
  /usr/bin/time -f '%e %M' -o "$log" "$@" > "$log.out"
  printf '%s %s %s\n' "$label" "$(cat "$log")" "$(head -c 120 "$log.out" | tr -d '\n')" | tee -a "$results"
  rm -f "$log" "$log.out"
}
for run in $(seq "$runs"); do
  measure plain "$takehome" score --metric f1_macro --truth "$data/truth_labels.csv" --predictions "$data/pred_labels.csv" --target label
  measure sliced "$takehome" score --task "$root/tasks/bench" --predictions "$data/pred_labels.csv"
done
echo
echo "medians over $runs runs, $rows rows:"
python3 - "$results" <<'PY'
import statistics, sys
by = {}
for line in open(sys.argv[1]):
    label, seconds, kib = line.split()[:3]
    by.setdefault(label, []).append((float(seconds), int(kib)))
for label in ["plain", "sliced"]:
    runs = by[label]
    print(f"{label:7} {statistics.median(s for s, _ in runs):6.2f} s  {statistics.median(k for _, k in runs) / 1024:6.0f} MiB")
PY
