"""The lab's guest: a tiny multiboot kernel that dirties memory at a set rate.

The kernel is built from the C and assembly sources in ``guest/`` with the
machine's gcc, once per source/flags/compiler combination, into a cache
directory.  See ``docs/guest.md`` for what the guest does and its serial
heartbeat protocol (parsed by :mod:`migflow_lab.heartbeat`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from migflow.errors import PrerequisiteError, UsageError
from migflow.registry import GuestImage

__all__ = ["DEFAULTS", "GUESTS", "WORKLOAD_SCHEMA", "build_kernel", "cache_dir", "cmdline", "guest_image", "kvm_runs_linux", "normalize", "validate_create"]

SOURCE_DIR = Path(__file__).with_name("guest")
SOURCES = ("boot.S", "kernel.c")
LINKER_SCRIPT = "kernel.ld"

CFLAGS = (
    "-m32",
    "-march=i686",
    "-O2",
    "-ffreestanding",
    "-fno-pic",
    "-fno-pie",
    "-no-pie",
    "-fno-stack-protector",
    "-fno-asynchronous-unwind-tables",
    "-fno-builtin",
    "-nostdlib",
    "-static",
    "-Wall",
    "-Wl,-n",
    "-Wl,--build-id=none",
    "-Wl,--no-warn-rwx-segments",
)

GCC_HINT = "apt-get install gcc binutils (gcc must accept -m32; on non-x86 hosts install gcc-i686-linux-gnu)"

#: Defaults applied to a workload table.
DEFAULTS = {
    "working_set_mib": 64,
    "dirty_rate_mibs": 32,
    "pattern": "sequential",
    "heartbeat_us": 1000,
    "disk_mib": 0,
    "disk_write_kibs": 0,
}

#: JSON Schema (draft 2020-12) of ``[domain.create.workload]``.
WORKLOAD_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "migflow lab guest workload",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "working_set_mib": {
            "description": "Memory the guest keeps dirtying, in MiB.  Clamped by the guest to its RAM minus 2 MiB (and reported on serial).",
            "type": "integer",
            "minimum": 1,
            "maximum": 65536,
            "default": DEFAULTS["working_set_mib"],
        },
        "dirty_rate_mibs": {
            "description": "Target dirty rate in MiB/s (4 KiB pages dirtied per second x 4096 / 2^20). "
            '0 or "unbounded" dirties as fast as the vCPU can, which a 1 Gbit/s migration '
            "never converges on.",
            "oneOf": [
                {"type": "number", "minimum": 0, "maximum": 1000000},
                {"const": "unbounded"},
            ],
            "default": DEFAULTS["dirty_rate_mibs"],
        },
        "pattern": {
            "description": "Page order: sequential sweep, or random pages (xorshift32).",
            "enum": ["sequential", "random"],
            "default": DEFAULTS["pattern"],
        },
        "heartbeat_us": {
            "description": "Period of the serial heartbeat byte, in microseconds of guest time.",
            "type": "integer",
            "minimum": 100,
            "maximum": 1000000,
            "default": DEFAULTS["heartbeat_us"],
        },
        "disk_mib": {
            "description": "Linux guest: size of its virtio-blk disk in MiB (0: no disk).  The disk writer writes and checks its first disk_mib MiB.",
            "type": "integer",
            "minimum": 0,
            "maximum": 65536,
            "default": 0,
        },
        "disk_write_kibs": {
            "description": "Linux guest: the rate its disk writer dirties the disk at, KiB/s (0: no writes).  Needs disk_mib.",
            "type": "integer",
            "minimum": 0,
            "maximum": 1048576,
            "default": 0,
        },
    },
}

#: the guests the lab offers (``[domain.create] guest``)
GUESTS = ("tiny", "linux")


def normalize(workload: dict | None) -> dict:
    """Return ``workload`` validated against :data:`WORKLOAD_SCHEMA`, defaults applied.

    :raises migflow.errors.UsageError: when the table is not valid.
    """
    import jsonschema

    data = dict(workload or {})
    errors = sorted(jsonschema.Draft202012Validator(WORKLOAD_SCHEMA).iter_errors(data), key=lambda e: list(e.path))
    if errors:
        msgs = "; ".join(f"{'.'.join(map(str, e.path)) or 'workload'}: {e.message}" for e in errors)
        raise UsageError(f"invalid guest workload: {msgs}")
    return {**DEFAULTS, **data}


def _rate_text(rate) -> str:
    if rate == "unbounded" or rate == 0:
        return "0"
    text = f"{float(rate):.3f}".rstrip("0").rstrip(".")
    return text or "0"


def cmdline(workload: dict | None = None) -> str:
    """The kernel command line for a workload table, e.g.
    ``ws=64 rate=32 pattern=seq hb_us=1000``.

    ``dirty_rate_mibs`` 0 or ``"unbounded"`` becomes ``rate=0`` (as fast as possible).
    """
    w = normalize(workload)
    pattern = "seq" if w["pattern"] == "sequential" else "random"
    return f"ws={int(w['working_set_mib'])} rate={_rate_text(w['dirty_rate_mibs'])} pattern={pattern} hb_us={int(w['heartbeat_us'])}"


def cache_dir() -> Path:
    """Where built kernels go: ``$MIGFLOW_CACHE_DIR``, else ``/var/cache/migflow``
    for root, else ``$XDG_CACHE_HOME/migflow`` (``~/.cache/migflow``)."""
    if os.environ.get("MIGFLOW_CACHE_DIR"):
        return Path(os.environ["MIGFLOW_CACHE_DIR"])
    if os.geteuid() == 0:
        return Path("/var/cache/migflow")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "migflow"


def _gcc() -> str:
    gcc = os.environ.get("MIGFLOW_GUEST_CC") or shutil.which("gcc")
    if not gcc:
        raise PrerequisiteError("gcc not found: it is needed to build the lab's guest kernel", hint=GCC_HINT)
    return gcc


def _key(gcc: str) -> str:
    h = hashlib.sha256()
    for name in (*SOURCES, LINKER_SCRIPT):
        h.update(name.encode() + b"\0" + (SOURCE_DIR / name).read_bytes() + b"\0")
    h.update(" ".join(CFLAGS).encode())
    try:
        version = subprocess.run([gcc, "--version"], check=False, capture_output=True, text=True, timeout=30).stdout
    except OSError as e:
        raise PrerequisiteError(f"cannot run {gcc}: {e}", hint=GCC_HINT) from None
    h.update(version.encode())
    return h.hexdigest()[:16]


def build_kernel(force: bool = False) -> Path:
    """Compile the guest kernel (if not cached) and return its path.

    The file name carries a hash of the sources, flags and compiler version; the
    build writes a temporary file and renames it into place, so concurrent
    builds are safe.

    :param force: rebuild even when the cached kernel exists.
    :raises migflow.errors.PrerequisiteError: gcc is missing or cannot build 32-bit code.
    """
    gcc = _gcc()
    out_dir = cache_dir()
    target = out_dir / f"migflow-guest-{_key(gcc)}.elf"
    if target.exists() and not force:
        return target
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PrerequisiteError(f"cannot create the cache directory {out_dir}: {e}", hint="set MIGFLOW_CACHE_DIR to a writable directory") from None
    fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".elf", dir=out_dir)
    os.close(fd)
    cmd = [gcc, *CFLAGS, "-T", str(SOURCE_DIR / LINKER_SCRIPT), *(str(SOURCE_DIR / s) for s in SOURCES), "-o", tmp]
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
            raise PrerequisiteError(f"gcc could not build the 32-bit guest kernel (exit {proc.returncode}):\n{tail}", hint=GCC_HINT)
        _check_multiboot(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _check_multiboot(path: Path) -> None:
    head = path.read_bytes()[:8192]
    magic = (0x1BADB002).to_bytes(4, "little")
    at = head.find(magic)
    if at < 0 or at % 4:
        raise PrerequisiteError(
            f"{path}: the multiboot header is not in the first 8 KiB (the linker did not honour -n)",
            hint=GCC_HINT,
        )


def validate_create(create: dict | None, others: bool = False) -> list[tuple[str, str]]:
    """Problems of a ``[domain.create]`` table the lab would refuse at run time: (path, message) pairs.

    :param others: another plugin also provides guest images: a guest the lab does not
        know is then that plugin's business (and the workload table too).
    """
    if not isinstance(create, dict):
        return []
    import jsonschema

    from migflow.workflow.suggest import did_you_mean

    issues = []
    kind = create.get("guest", "tiny")
    if kind not in GUESTS:
        if others:
            return []
        return [("domain.create.guest", f"no plugin provides the guest {kind!r}{did_you_mean(kind, GUESTS)}; the lab offers {', '.join(GUESTS)}")]
    workload = create.get("workload") or {}
    for e in jsonschema.Draft202012Validator(WORKLOAD_SCHEMA).iter_errors(workload):
        where = ".".join(["domain.create.workload", *map(str, e.path)])
        if e.validator == "additionalProperties":
            unknown = sorted(set(workload) - set(WORKLOAD_SCHEMA["properties"]))
            for key in unknown:
                issues.append((f"domain.create.workload.{key}", f"unknown workload key {key!r}{did_you_mean(key, WORKLOAD_SCHEMA['properties'])}"))
        else:
            issues.append((where, e.message))
    if kind == "tiny" and (workload.get("disk_mib") or workload.get("disk_write_kibs")):
        issues.append(("domain.create.workload", 'disk_mib and disk_write_kibs need the Linux guest: guest = "linux" (the tiny guest has no devices)'))
    if kind == "linux" and workload.get("disk_write_kibs") and not workload.get("disk_mib"):
        issues.append(("domain.create.workload.disk_write_kibs", "the guest writes its disk: give it one with disk_mib"))
    return issues


def guest_image(workload: dict | None = None, create: dict | None = None, guest: int = 1) -> GuestImage | None:
    """The :class:`~migflow.registry.GuestImage` of guest ``guest`` of a ``[domain.create]``
    table (builds the kernel, or the Linux guest, if needed)."""
    kind = (create or {}).get("guest", "tiny")
    if kind == "linux":
        return _linux_image(normalize(workload), guest)
    if kind != "tiny":
        return None  # another plugin's guest
    from .prereqs import accel

    virt_type = "qemu" if accel() == "tcg" else None  # MIGFLOW_LAB_ACCEL=tcg holds for the guests too
    firmware = QBOOT if os.path.exists(QBOOT) else None
    return GuestImage(kernel=str(build_kernel()), cmdline=cmdline(workload), heartbeat=True, virt_type=virt_type, firmware=firmware)


#: qboot, QEMU's minimal firmware (Debian's qemu-system-data): it boots the tiny guest in
#: 0.26 s where SeaBIOS takes 4.4 s under kvm-pvm (0.26 s under TCG); docs/guest.md
QBOOT = "/usr/share/qemu/qboot.rom"


def _linux_image(w: dict, guest: int) -> GuestImage:
    """The Linux guest: Debian's cloud kernel, an initramfs of the lab's programs, a NIC
    on the lab's VM network (its own address), a disk when ``disk_mib`` > 0."""
    from .linux import build_linux_guest
    from .topology import VM_BRIDGE_IN_HOST, vm_address

    built = build_linux_guest(cache_dir() / "linux")
    address = vm_address(guest)
    words = [
        built["cmdline_base"],
        cmdline(w),
        f"ip={address}/{VM_PREFIX_LEN}",
        f"echo_port={ECHO_PORT}",
        f"disk_rate={int(w['disk_write_kibs'])}",
        f"disk_mib={int(w['disk_mib']) or 64}",
    ]
    return GuestImage(
        kernel=built["kernel"],
        initrd=built["initrd"],
        cmdline=" ".join(words),
        heartbeat=True,
        console=True,
        disk_mib=int(w["disk_mib"]) or None,
        network=VM_BRIDGE_IN_HOST,
        address=address,
        echo_port=ECHO_PORT,
        virt_type=None if kvm_runs_linux() else "qemu",  # TCG unless this KVM runs Linux
        mac=f"52:54:00:6d:66:{guest:02x}",
    )


#: the port the Linux guest echoes UDP datagrams on
ECHO_PORT = 7
VM_PREFIX_LEN = 25


def kvm_runs_linux() -> bool | None:
    """Can this machine's /dev/kvm run a Linux guest?  False on kvm-pvm, a software
    hypervisor some sandboxes offer as /dev/kvm: it runs the tiny guest, but the
    Debian kernel hangs under it (docs/lab.md); None when there is no KVM at all."""
    from .prereqs import accel

    if accel() != "kvm":
        return None
    return not os.path.exists("/sys/module/kvm_pvm")
