#!/usr/bin/env bash
# Reads and scores 10-million-row predictions files with `takehome score` and, side by side in
# the same run, with pandas + scikit-learn (score_peer.py). Prints wall time and peak memory
# (maximum resident set size, from GNU time) per run, and medians.
#
#   benches/score_10m.sh [RUNS] [N_ROWS]
#
# Needs: a release build (cargo build --release), GNU time, python3 with numpy, pandas and
# scikit-learn (PYTHON=... to choose the interpreter; pin: runner-images/python/requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
rows=${2:-10000000}
python=${PYTHON:-python3}
data=${BENCH_DATA:-/var/tmp/takehome-bench-$rows}
takehome=./target/release/takehome
[ -x "$takehome" ] || { echo "build first: cargo build --release" >&2; exit 2; }
[ -f "$data/pred_values.csv" ] || "$python" benches/make_score_data.py "$data" "$rows"

values=$(mktemp)
measure() { # label, command...: prints "label seconds max_rss_kib"; keeps the printed value
  local label=$1; shift
  local log; log=$(mktemp)
  /usr/bin/time -f '%e %M' -o "$log" "$@" > "$log.out"
  printf '%s %s\n' "$label" "$(cat "$log")"
  printf '%s %s\n' "$label" "$("$python" -c 'import json,sys; print(repr(json.load(open(sys.argv[1]))["value"]))' "$log.out")" >> "$values"
  rm -f "$log" "$log.out"
}

results=$(mktemp)
for metric in f1_macro roc_auc rmse; do
  case $metric in
    f1_macro) truth=truth_labels.csv; pred=pred_labels.csv; extra=(--target label) ;;
    roc_auc) truth=truth_binary.csv; pred=pred_proba.csv; extra=(--target label --positive yes) ;;
    rmse) truth=truth_values.csv; pred=pred_values.csv; extra=(--target label) ;;
  esac
  for run in $(seq "$runs"); do
    measure "takehome $metric" "$takehome" score --metric "$metric" --truth "$data/$truth" --predictions "$data/$pred" "${extra[@]}" | tee -a "$results"
    measure "pandas+sklearn $metric" "$python" benches/score_peer.py "$metric" "$data/$truth" "$data/$pred" | tee -a "$results"
  done
done
echo
echo "medians over $runs runs, $rows rows:"
"$python" - "$results" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
by = {}
for tool, metric, seconds, kib in rows:
    by.setdefault((metric, tool), []).append((float(seconds), int(kib)))
for metric in ["f1_macro", "roc_auc", "rmse"]:
    ours = by[(metric, "takehome")]; peer = by[(metric, "pandas+sklearn")]
    s_ours, s_peer = statistics.median(s for s, _ in ours), statistics.median(s for s, _ in peer)
    m_ours, m_peer = statistics.median(k for _, k in ours) / 1024, statistics.median(k for _, k in peer) / 1024
    print(f"{metric:9} takehome {s_ours:6.2f} s {m_ours:7.0f} MiB | pandas+sklearn {s_peer:6.2f} s {m_peer:7.0f} MiB | speed x{s_peer / s_ours:5.1f}, memory {m_ours / m_peer:.2f}x")
PY
echo
echo "values (takehome and the peer must agree within 1e-9 relative):"
sort -u "$values"
"$python" - "$values" <<'PY'
import sys
values = {}
for line in open(sys.argv[1]):
    tool, metric, value = line.split()
    values.setdefault(metric, {})[tool] = float(value)
for metric, by_tool in values.items():
    a, b = by_tool["takehome"], by_tool["pandas+sklearn"]
    status = "agree" if abs(a - b) <= 1e-9 * max(abs(b), 1e-300) else "DIFFER"
    print(f"{metric}: {status} (takehome {a!r}, scikit-learn {b!r})")
PY
rm -f "$results" "$values"
