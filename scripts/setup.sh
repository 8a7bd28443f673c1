#!/bin/sh
# One-time set-up of a fresh Debian 12 machine (root) for migflow and its lab:
# system packages, then migflow itself with its test dependencies.
#
#   sudo scripts/setup.sh
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
sh "$here/scripts/install-prereqs.sh"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -e "$here[test]"
echo "setup.sh: done. Next: migflow run workflows/zstack_default.toml   (tests: python3 -m pytest)"
