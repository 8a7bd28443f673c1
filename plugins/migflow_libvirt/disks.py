"""Disk images of created guests: a qcow2 file per guest in each host's own image folder.

The lab's hosts do not share storage: ``/var/lib/libvirt/images`` is a
folder of each host's own (its mount namespace), so a guest with a disk
migrates only with a storage-copying flag (``copy-storage-all``,
``copy-storage-inc``), for which the destination needs an image of the same
size at the same path before the leg.  migflow creates and removes the files
on each host through the plugin that runs commands there
(``migflow_host_runner``), with ``qemu-img``.
"""

from __future__ import annotations

import subprocess
from typing import Any

from migflow.errors import StepError

__all__ = ["IMAGE_DIR", "create_disk", "disk_path", "remove_disk"]

#: where a host keeps the images of the guests migflow creates (each host its own)
IMAGE_DIR = "/var/lib/libvirt/images"


def disk_path(uuid: str) -> str:
    return f"{IMAGE_DIR}/migflow-{uuid}.qcow2"


def _run(runner: Any, argv: list[str], what: str) -> None:
    proc = subprocess.run(runner.argv(argv), check=False, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise StepError(f"{what} on {runner.name} failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:] or proc.returncode}")


def create_disk(runner: Any, path: str, size_mib: int) -> None:
    """An empty qcow2 image of ``size_mib`` MiB at ``path`` on the runner's host."""
    _run(runner, ["mkdir", "-p", IMAGE_DIR], f"creating {IMAGE_DIR}")
    _run(runner, ["qemu-img", "create", "-q", "-f", "qcow2", path, f"{int(size_mib)}M"], f"qemu-img create {path}")


def remove_disk(runner: Any, path: str) -> None:
    """Remove the image (no error when it is not there)."""
    _run(runner, ["rm", "-f", path], f"removing {path}")
