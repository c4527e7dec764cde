#!/usr/bin/env bash
# The whole test suite: installs what it needs, then runs every test (unit, integration,
# end-to-end with the official Python clients). Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
exec cargo test --locked "$@"
