#!/bin/sh
# The objectives at one budget (issue #14's comparison table): SPADE hinge + feature matching and pix2pix
# trained like the OASIS-objective spade128-demo (128x256, 2000 steps x batch 1, seeds 0-9999, 1 thread;
# models/demo/README.md "How the depth-aware pair was trained" has its command). Ships both (float16),
# evaluates them on held-out seeds 10000-10049 with the demo segmenter and writes the figures into the
# cards. The two trainings (2026-12-06, side by side, timed by models/demo/timed_run.sh), then this script,
# from the repository root:
#   C="--seeds 0-9999 --max-steps 2000 --save-every 500 --keep 2 --log-every 50 --threads 1 --no-progress"
#   models/demo/timed_run.sh budget128-hinge .venv/bin/python train/spade.py --preset demo-spade --size 128x256 \
#       --channels-last $C --out runs/demo/budget128-hinge --name spade128-hinge-demo
#   models/demo/timed_run.sh budget128-pix2pix .venv/bin/python train/pix2pix.py --preset demo --netG unet_128 \
#       --size 128x256 $C --out runs/demo/budget128-pix2pix --name pix2pix128-demo
#   RUNS=runs/demo sh models/baselines/ship_budget128.sh
set -eu
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
RUNS=${RUNS:-runs/demo}
PY=${PY:-.venv/bin/python}
SEG=models/demo/segmenter-demo.card.json
SEEDS=10000-10049
for pair in "budget128-hinge spade128-hinge-demo" "budget128-pix2pix pix2pix128-demo"; do
    run=${pair% *}; name=${pair#* }
    B=models/baselines/$name
    mkdir -p "$B/eval"
    cp "$RUNS/$run.log" "$B/$name.log"
    $PY models/demo/finalize.py ship "$RUNS/$run/$name.card.json" "$B" --half --train-log "$RUNS/$run.log"
    # the 50 held-out seeds (the README table), and the first 5 for the test suite's cheap recomputation
    for pass in "$SEEDS heldout" "10000-10004 heldout_check"; do
        seeds=${pass% *}; prefix=${pass#* }
        cmd="cityserve eval generator $B/$name.card.json --segmenter $SEG --seeds $seeds --out $B/eval/$prefix.json"
        $PY -m $cmd --no-progress
        $PY models/demo/finalize.py metrics "$B/$name.card.json" "$B/eval/$prefix.json" --command "$cmd" --prefix "$prefix/"
    done
done
