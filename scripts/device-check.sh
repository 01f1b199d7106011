#!/usr/bin/env bash
# Issue 19's accelerator checks in one run: the device test suite, then decoding and training benchmarks.
# Usage: scripts/device-check.sh [OUT_DIR] [DEVICE]   (defaults: device-check/, cuda; PYTHON: python3)
# OUT_DIR gets one JSON file per command and log.txt; the exit status is 1 if any step failed. alm is imported
# from this checkout when the interpreter does not have it installed, so a machine with torch (and transformers,
# pytest, typer, rich, pyyaml, tokenizers) needs nothing else. Each step has a time limit, so one that hangs
# cannot use up a lease (together they fit in 10 minutes). SAMPLE_ARGS and TRAIN_ARGS replace the benchmarks'
# sizes (a CPU rehearsal uses tiny ones). Figures go to docs/BENCHMARKS.md by hand, with doctor.json's details.
set -uo pipefail
out=$(realpath -m "${1:-device-check}")
device=${2:-cuda}
python=${PYTHON:-python3}
cd "$(dirname "$0")/.."
mkdir -p "$out"
log="$out/log.txt"
: >"$log"
"$python" -c "import alm" 2>/dev/null || export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export ALM_CACHE_DIR="${ALM_CACHE_DIR:-$(mktemp -d)}"  # compiled steps: not into OUT_DIR (they are large)
failed=0
read -ra sample_args <<<"${SAMPLE_ARGS:---model pico}"
read -ra train_args <<<"${TRAIN_ARGS:---model small --precision bf16 --batch-size 16 --seq 1024 --steps 20}"

# step NAME LIMIT_S COMMAND...: stdout to NAME.json (or the log), stderr to the log
step() {
  local name=$1 limit=$2 start rc
  shift 2
  echo "== $name: $*" | tee -a "$log"
  start=$(date +%s)
  if [[ $name == tests ]]; then
    timeout "$limit" "$@" >>"$log" 2>&1
  else
    timeout "$limit" "$@" >"$out/$name.json" 2>>"$log"
  fi
  rc=$?
  echo "== $name: exit $rc after $(($(date +%s) - start)) s" | tee -a "$log"
  ((rc == 0)) || failed=1
}

step doctor 60 "$python" -m alm doctor --device "$device" --json
step tests 150 env ALM_TEST_DEVICES="$device" "$python" -m pytest -q -p no:cacheprovider tests/device
step sample 150 "$python" -m alm bench sample --device "$device" "${sample_args[@]}" --json
step train-compiled 150 "$python" -m alm bench train --device "$device" "${train_args[@]}" --compile --json
step train-eager 75 "$python" -m alm bench train --device "$device" "${train_args[@]}" --json
tail -n 3 "$log"
exit $failed
