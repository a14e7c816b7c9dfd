#!/usr/bin/env bash
# Set up (with test extras) and run every test: the panel's unit tests (jest), then pytest
# (which includes the panel's end-to-end tests in headless Chromium). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh e2e
if [ ! -x /usr/bin/chromium ]; then
  echo "the panel's end-to-end tests need Debian's chromium: apt-get install -y chromium" >&2
  exit 1
fi
(cd labextension && PATH="$PWD/../.venv/bin:$PATH" ../.venv/bin/jlpm test --silent)
set +e
.venv/bin/python -m pytest "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$code"
