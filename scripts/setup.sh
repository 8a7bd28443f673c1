#!/bin/sh
# Make this machine ready for migflow (Debian 12, root): system packages, then
# migflow itself from this checkout with its test extras.  Nothing is installed
# twice: a second call takes a second or two.  scripts/main-job and scripts/test
# call it; you do not need to.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
sh "$here/scripts/install-prereqs.sh"
# pip only when migflow is not installed from this checkout, or an extra is missing
if ! python3 - "$here" <<'PY' 2>/dev/null
import importlib.util, pathlib, sys
import migflow
ok = pathlib.Path(migflow.__file__).resolve().is_relative_to(pathlib.Path(sys.argv[1]).resolve())
ok = ok and all(importlib.util.find_spec(m) for m in ("libvirt", "duckdb", "pytest", "hypothesis", "matplotlib", "ruff", "mypy", "cosmic_ray"))
sys.exit(0 if ok else 1)
PY
then
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -e "$here[test]"
fi
