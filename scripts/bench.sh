#!/usr/bin/env bash
# The benchmark: set up .venv with the peers (the `bench` extra), then run every system and
# write bench/results/latest.{json,md}.  Extra arguments go to `python -m bench` (--help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test,bench
exec .venv/bin/python -m bench "$@"
