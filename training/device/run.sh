#!/usr/bin/env bash
# Train on a GPU device machine and bring the run back under $OUT (checkpoints, config, run.json, metrics).
# Usage (device tool, carry [".whl", ".gpu"]): bash training/device/run.sh [PRESET] [--set key=value ...]
# Default preset: gpu-continue (both shipped models, continued). Export here afterwards with
#   marktrace export-models RUN --out models/shipped --version X.Y.Z
set -uo pipefail
preset=${1:-gpu-continue}; shift || true
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
# name the commit the copy was made from as prepare.sh wrote it: the copy may lack .git, or hold a stale one (on
# 2026-11-28 the device's .git was the session's starting commit, and the run was recorded as that one, -dirty)
if [ -z "${MARKTRACE_TRAINING_COMMIT:-}" ] && [ -f .whl/TRAINING_COMMIT ]; then
  export MARKTRACE_TRAINING_COMMIT=$(cat .whl/TRAINING_COMMIT)
fi
echo "training commit: ${MARKTRACE_TRAINING_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
extra=()  # english_g2 weights for the recipes that start from them (not the restorer's)
case "$preset" in *restorer*) ;; *) [ -d .gpu/weights ] && extra=(--set pretrained_dir=.gpu/weights) ;; esac
python3 -m marktrace.cli train --config "$preset" --out /tmp/runs "${extra[@]}" "$@" 2>&1 | tee /tmp/train.log
status=${PIPESTATUS[0]}
run=$(ls -dt /tmp/runs/*/ 2>/dev/null | head -1)
name=$(basename "${run:-none}")
# the run folder's layout is kept ($OUT/NAME/checkpoints/*.pt), so `marktrace export-models` takes it as it is
mkdir -p "$OUT/$name/checkpoints"
cp /tmp/train.log "$OUT/$name/train.log" 2>/dev/null
for f in run.json config.yaml metrics.jsonl; do
  [ -f "$run/$f" ] && cp "$run/$f" "$OUT/$name/$f"
done
cp "$run"/checkpoints/*-best.pt "$OUT/$name/checkpoints/" 2>/dev/null
ls -laR "$OUT/$name"
exit "$status"
