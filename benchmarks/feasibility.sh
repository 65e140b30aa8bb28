#!/usr/bin/env bash
# Does mome learn as fast as the feasibility prototype (an independent script that preceded mome)? Its task
# and recipe, end to end, then its numbers beside ours. Results so far: docs/benchmarks.md, docs/experiments.md.
#
#   bash benchmarks/feasibility.sh [OUT_DIR] [extra `mome train` overrides...]
set -euo pipefail
out=${1:-feasibility_out}; shift || true
mome=${MOME:-.venv/bin/mome}
start=$(date +%s)
if [ ! -f "$out/corpus/labels/test.csv" ]; then
  # 1,700 flite GRID utterances, no babble; --fixed-voices: test speakers sound like training speakers, as in
  # the prototype (its test sentences were held out, its voices were not). --overwrite: an interrupted synth
  # (no test.csv yet) is redone in place.
  "$mome" synth "$out/corpus" --utterances 1700 --grid-fraction 1 --engines flite --fixed-voices \
    --babble-seconds 0 --splits train=0.8823,val=0.05885,test=0.05885 --overwrite
fi
"$mome" train feasibility data.root="$out/corpus" train.output_dir="$out/run" "$@"
"$mome" eval "$out/run" --labels labels/test.csv --snr clean --out "$out/eval" --quiet
cat "$out/eval/results.md"
echo "prototype (same task, 500 steps, seed 1): a4 0.33 %, a16 2.00 %; seed 2 at 350 steps: 1.50 % / 6.67 %"
echo "total $(( $(date +%s) - start )) s"
