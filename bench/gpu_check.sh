#!/usr/bin/env bash
# One GPU check, under 8 minutes on one GPU (H100/H200 class), appending its sections to bench/RESULTS.md.
usage() {
  cat <<'TXT'
usage: bash bench/gpu_check.sh [--out FILE] [--skip-miniature] [--skip-qlora]

Run from the repository root on a machine with a CUDA GPU (nothing is downloaded):
  1. the extraction benchmark on CUDA          python bench/bench_extract.py --device cuda
  2. one LoRA step at the Flan-T5-XL shape     python bench/bench_llm_step.py --device cuda --batch-size 8 --steps 3
  3. a 4-bit QLoRA step, Qwen2.5-1.5B shape    python bench/bench_llm_step.py --device cuda --batch-size 8 --steps 3 --family causal --quant 4bit
     (random weights from its config; needs `pip install bitsandbytes`)
  4. the Table 3 miniature on CUDA in bf16     spamo reproduce table3 --miniature (precision/llm_dtype bf16)
  5. extraction end to end, 720p H.264        python bench/bench_extract.py --e2e --device cuda --videos 16 --seconds 8 --size short:256
  6. generation at the Flan-T5-XL shape       python bench/bench_generate.py --shape flan-t5-xl --device cuda --sentences 128 --repeats 1
Each step has its own time limit (100, 150, 120, 210, 150 and 150 s; --skip-miniature --skip-qlora: under 10 minutes); a step that fails or times out is recorded as such and
the others still run. Output goes to bench/RESULTS.md (a dated section per step; --out FILE writes elsewhere),
logs to bench/gpu_check-logs/. Exit status: the number of failed steps.
  PYTHONPATH=$PWD bash bench/gpu_check.sh           # use this checkout rather than an installed spamo
TXT
}
set -u
OUT=bench/RESULTS.md; MINI=1; QLORA=1
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --out) OUT="$2"; shift ;;
    --skip-miniature) MINI=0 ;;
    --skip-qlora) QLORA=0 ;;
    *) echo "gpu_check.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
cd "$(dirname "$0")/.." || exit 2
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
LOGS=bench/gpu_check-logs; mkdir -p "$LOGS"
if ! python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_check.sh: no CUDA device visible to torch; nothing run" >&2; exit 2
fi
GPU=$(python -c 'import torch; print(torch.cuda.get_device_name(0), "| torch", torch.__version__)')
FAILED=0

step() {  # step NAME LIMIT_S COMMAND...: run with a time limit, append a section with the output's tail
  local name="$1" limit="$2"; shift 2
  local log="$LOGS/$name.log" t0=$SECONDS rc
  echo "== $name: $*" >&2
  timeout "$limit" "$@" >"$log" 2>&1; rc=$?
  local secs=$((SECONDS - t0)) state="ok"
  [ $rc -eq 124 ] && state="TIMED OUT after ${limit} s"
  [ $rc -ne 0 ] && [ $rc -ne 124 ] && state="FAILED (exit $rc)"
  [ $rc -ne 0 ] && FAILED=$((FAILED + 1))
  {
    echo; echo "## GPU check: $name ($GPU), $(date -u '+%d %b %Y %H:%M UTC')"; echo
    echo "\`$*\`: $state, ${secs} s"; echo; echo '```'; tail -n 40 "$log"; echo '```'
  } >>"$OUT"
  echo "   $state, ${secs} s (log: $log)" >&2
}

step extract 100 python bench/bench_extract.py --device cuda
step llm-step-xl-batch8 150 python bench/bench_llm_step.py --device cuda --dtype bf16 --batch-size 8 --steps 3
[ "$QLORA" = 1 ] && step llm-step-qwen2.5-1.5b-4bit-batch8 120 python bench/bench_llm_step.py --device cuda --batch-size 8 --steps 3 --family causal --quant 4bit
step extract-e2e-720p 150 python bench/bench_extract.py --e2e --device cuda --videos 16 --seconds 8 --size short:256
step generate-flan-t5-xl 150 python bench/bench_generate.py --shape flan-t5-xl --device cuda --sentences 128 --repeats 1
if [ "$MINI" = 1 ]; then
  # `spamo reproduce table3 --miniature --train precision bf16 --train llm_dtype bf16`, without needing the CLI entry
  step table3-miniature-bf16 210 python -c "import sys; from spamo.reproduce import reproduce_cli; sys.exit(reproduce_cli(
    ['table3', '--miniature', '--out', 'bench/gpu_check-results', '--train', 'precision', 'bf16', '--train', 'llm_dtype', 'bf16']))"
  CSV=bench/gpu_check-results/table3-miniature.csv
  [ -f "$CSV" ] && { echo; echo "\`$CSV\`:"; echo; echo '```'; cat "$CSV"; echo '```'; } >>"$OUT"
fi
exit $FAILED
