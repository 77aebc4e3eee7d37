#!/usr/bin/env bash
# Prepare, on the development machine, what a GPU device machine lacks for training (run once per checkout,
# and again after every commit: it names the commit the run records):
#   .whl/         Python 3.12 wheels of the packages its image does not have (pydantic and its needs)
#   .gpu/weights  nothing is needed from here when training continues from the shipped ONNX files; the
#                 english_g2 weights are copied too (md5 checked at load) for recipes that start from them.
# Both folders are git-ignored; name them in the device tool's `carry`.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
PY=${PYTHON:-.venv/bin/python}
mkdir -p .whl .gpu/weights
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
# the versions installed here, so the device trains with what the tests ran against
specs=$("$PY" -c "from importlib.metadata import version as v; print(' '.join(f'{n}=={v(n)}' for n in ('pydantic', 'pydantic-core', 'annotated-types', 'typing-inspection', 'typing-extensions')))")
for spec in $specs; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" -d .whl "$spec"
done
weights=$("$PY" -c "from marktrace.models.pretrained import ENGLISH_G2, verified_weight_path; print(verified_weight_path(ENGLISH_G2, None))")
cp "$weights" .gpu/weights/
# the commit the device's copy is made from (it may have no .git): run.sh hands it to the run folder and the
# exported files' `training_commit`; uncommitted changes are marked -dirty, as git_commit() does here
"$PY" -c "from marktrace.training.run import git_commit; print(git_commit())" > .whl/TRAINING_COMMIT
ls -la .whl .gpu/weights; echo "training commit: $(cat .whl/TRAINING_COMMIT)"
