#!/bin/bash
# `make bench`: runs every benchmark, each writing its figures to $BENCH_OUT/<name>.json,
# and exits 1 if any of them failed (missed a target it prints, or broke), after
# running them all. Not benchmarks: bench/x11_animator.py (a source for grid_fps),
# bench/report.py (their shared module), bench/soak.py (`make soak`, 10 minutes).
# Needs an X display for grid_fps (the Makefile runs this under xvfb-run).
set -u -o pipefail

py=${PY:-.venv/bin/python}
out=${BENCH_OUT:-build/bench}
mkdir -p "$out"

# name  script  arguments
benches=(
    "provision bench/provision.py"
    "jobs bench/jobs.py"
    "hub bench/hub.py"
    "runtime_start bench/runtime_start.py"
    "stream_proxy bench/stream_proxy.py"
    "grid_fps_4 bench/grid_fps.py --panes 4"
    "grid_fps_16_light bench/grid_fps.py --panes 16 --source xvnc --animator x11"
    "flows bench/flows.py"
)

failed=()
for entry in "${benches[@]}"; do
    read -r name script args <<<"$entry"
    echo "== $name: $script $args"
    # shellcheck disable=SC2086  # $args holds several words on purpose
    if ! "$py" "$script" $args --json "$out/$name.json"; then
        failed+=("$name")
    fi
    echo
done

echo "== benchmarks: ${#benches[@]} run, $((${#benches[@]} - ${#failed[@]})) passed, ${#failed[@]} failed${failed[*]:+: ${failed[*]}}"
echo "   figures in $out/"
((${#failed[@]} == 0))
