#!/usr/bin/env bash
# The README's main job: set up the environment, then benchmark the sync on the GPU if there is
# one, else on the CPU. Extra arguments go to bench_sync.py (see --help); without --json, every
# figure goes to bench/last_run.json and the figure to bench/last_run.png.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup-env
case " $* " in
  *" --json "*) .venv/bin/python bench/bench_sync.py "$@" ;;
  *) .venv/bin/python bench/bench_sync.py --json bench/last_run.json "$@" ;;
esac
