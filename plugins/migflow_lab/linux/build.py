"""Build the lab's Linux test guest: a Debian kernel and a small initramfs.

:func:`build_linux_guest` downloads two Debian packages with ``apt-get
download`` (never installing them on the host): the kernel that
``linux-image-cloud-amd64`` depends on, and ``busybox-static``.  It compiles
the guest's own programs (``src/*.c``) as static binaries with the host's gcc
and glibc, and writes a gzip'd cpio initramfs holding busybox, the virtio
modules in dependency order, ``/init`` (``src/init.sh``) and the programs.

Everything lands in ``cache_dir/linux-guest-<hash>/`` where the hash covers
the package versions, every file of this package (sources, scripts, this
builder), the compiler flags and ``gcc --version``: a change of any rebuilds,
an unchanged guest is reused.  Downloaded ``.deb`` files are kept in
``cache_dir/debs/`` and not fetched again.

The guest's programs and serial protocol are described in ``src/mf-dirty.c``
and docs/guest.md; the host parses its heartbeat with
:mod:`migflow_lab.heartbeat`, unchanged.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
from pathlib import Path

from migflow.errors import PrerequisiteError

from .initramfs import Initramfs

__all__ = ["CMDLINE_BASE", "MODULES", "PROGRAMS", "build_linux_guest"]

FORMAT = 1  #: bump to force a rebuild of every cached guest
HERE = Path(__file__).resolve().parent
SRC = HERE / "src"

KERNEL_META = "linux-image-cloud-amd64"  #: metapackage; its dependency is the real kernel
BUSYBOX = "busybox-static"

#: Modules the guest needs; their dependencies are added, in load order.
MODULES = ("virtio_pci", "virtio_net", "virtio_blk")

#: The guest's own programs: ``src/<name>.c`` -> ``/bin/<name>``.
PROGRAMS = ("mf-dirty", "mf-disk", "mf-echo")

CFLAGS = ("-static", "-O2", "-Wall", "-s")

#: Kernel messages go to the second serial port; the first one is the heartbeat's.
CMDLINE_BASE = "console=ttyS1 quiet"

GUEST_DIRS = ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "run", "tmp", "etc", "lib", "lib/modules")


def build_linux_guest(cache_dir: Path, echo=print) -> dict:
    """Build the guest (unless cached) and return its paths.

    :param cache_dir: where the ``.deb`` files and built guests are kept.
    :param echo: called with one line of progress per step.
    :returns: ``{"kernel": path, "initrd": path, "cmdline_base": str, "bzimage": path,
        "manifest": path}``; append the workload's ``key=value`` words to ``cmdline_base``.
        ``kernel`` is the uncompressed ELF with its PVH entry point (booted by QEMU
        without the decompressor), or the bzImage when the kernel has no PVH entry.
    :raises PrerequisiteError: gcc, static glibc, apt or dpkg-deb is missing, or a
        package cannot be resolved or downloaded.
    """
    cache_dir = Path(cache_dir)
    gcc = _check_compiler()
    versions = _resolve_versions(cache_dir)
    key = _key(versions, gcc)
    out = cache_dir / f"linux-guest-{key}"
    result = {
        "kernel": str(out / "vmlinux"),
        "bzimage": str(out / "vmlinuz"),
        "initrd": str(out / "initrd.gz"),
        "cmdline_base": CMDLINE_BASE,
        "manifest": str(out / "manifest.json"),
    }
    if (out / "manifest.json").exists():
        return _with_kernel(result)
    t0 = time.monotonic()
    _need("dpkg-deb", "dpkg")  # fail before a download that could not be used
    cache_dir.mkdir(parents=True, exist_ok=True)
    debs = {pkg: _download(pkg, ver, cache_dir / "debs", echo) for pkg, ver in versions.items()}
    work = Path(tempfile.mkdtemp(prefix=".build-linux-", dir=cache_dir))
    try:
        staged = _assemble(debs, gcc, work, echo)
        manifest = {**staged, "key": key, "versions": versions, "build_s": round(time.monotonic() - t0, 2)}
        (work / "out" / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        try:
            os.rename(work / "out", out)
        except OSError:
            if not (out / "manifest.json").exists():  # not a concurrent build that won
                raise
        echo(f"linux guest: built {out} in {manifest['build_s']} s (initrd {staged['initrd_bytes'] / 1e6:.2f} MB)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _with_kernel(result)


def _with_kernel(result: dict) -> dict:
    """``kernel`` is the PVH ELF when the kernel has one, else the bzImage."""
    if not os.path.exists(result["kernel"]):
        result["kernel"] = result["bzimage"]
    return result


# -- prerequisites -------------------------------------------------------------


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise PrerequisiteError(f"{tool} not found: it is needed to build the Linux guest", hint=f"apt-get install {package}")
    return path


def _check_compiler() -> str:
    gcc = os.environ.get("MIGFLOW_GUEST_CC") or _need("gcc", "gcc")
    libc = subprocess.run([gcc, "-print-file-name=libc.a"], capture_output=True, text=True, check=False).stdout.strip()
    if not os.path.isabs(libc):
        raise PrerequisiteError("static glibc (libc.a) not found: the guest's programs are linked -static", hint="apt-get install libc6-dev")
    return gcc


def _apt(*args: str, cwd: Path | None = None) -> str:
    tool = _need(args[0], "apt")
    proc = subprocess.run([tool, *args[1:]], capture_output=True, text=True, cwd=cwd, timeout=600, check=False)
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.strip().splitlines()[-2:])
        raise PrerequisiteError(f"{' '.join(args)} failed: {tail}", hint="apt-get update")
    return proc.stdout


# -- packages --------------------------------------------------------------------


def _candidates(*pkgs: str) -> dict[str, dict[str, str]]:
    """{package: {"Version": ..., "Depends": ...}} of what apt would install (one apt-cache call)."""
    text = _apt("apt-cache", "show", "--no-all-versions", *pkgs)
    found = {}
    for stanza in text.split("\n\n"):
        fields = dict(re.findall(r"^(Package|Version|Depends): (.*)$", stanza, re.M))
        if "Package" in fields and "Version" in fields:
            found[fields["Package"]] = fields
    for pkg in pkgs:
        if pkg not in found:
            raise PrerequisiteError(f"apt knows no package {pkg}", hint="apt-get update")
    return found


def _resolve_versions(cache_dir: Path) -> dict[str, str]:
    """{package: version} for the real kernel package and busybox-static.

    The metapackage depends on e.g. ``linux-image-6.1.0-57-cloud-amd64 (= 6.1.192-3)``.
    Without apt's lists (or apt), the newest cached ``.deb`` files are used.
    """
    try:
        found = _candidates(KERNEL_META, BUSYBOX)
        depends = found[KERNEL_META].get("Depends", "")
        m = re.search(r"(linux-image-[0-9][^\s,(]*)(?:\s*\(=\s*([^)\s]+)\))?", depends)
        if not m:
            raise PrerequisiteError(f"cannot find the kernel package in {KERNEL_META}'s Depends: {depends!r}")
        kernel = m.group(1)
        kver = m.group(2) or _candidates(kernel)[kernel]["Version"]
        return {kernel: kver, BUSYBOX: found[BUSYBOX]["Version"]}
    except PrerequisiteError:
        cached = _cached_versions(cache_dir / "debs")
        if cached:
            return cached
        raise


def _deb_name(pkg: str, version: str) -> str:
    return f"{pkg}_{version.replace(':', '%3a')}_amd64.deb"


def _cached_versions(deb_dir: Path) -> dict[str, str] | None:
    def newest(pattern: str):
        found = sorted(deb_dir.glob(pattern), key=lambda p: p.stat().st_mtime)
        return found[-1].name.split("_") if found else None

    kernel, busybox = newest("linux-image-*-cloud-amd64_*.deb"), newest(f"{BUSYBOX}_*.deb")
    if not (kernel and busybox):
        return None
    return {kernel[0]: kernel[1].replace("%3a", ":"), BUSYBOX: busybox[1].replace("%3a", ":")}


def _download(pkg: str, version: str, deb_dir: Path, echo) -> Path:
    """The cached ``.deb`` of ``pkg=version``, downloaded first if needed."""
    target = deb_dir / _deb_name(pkg, version)
    if target.exists():
        return target
    deb_dir.mkdir(parents=True, exist_ok=True)
    echo(f"linux guest: downloading {pkg} {version}")
    tmp = Path(tempfile.mkdtemp(prefix=".dl-", dir=deb_dir))
    try:
        # As root, apt drops to the _apt user to download, which cannot write here.
        _apt("apt-get", "download", "-o", "APT::Sandbox::User=root", f"{pkg}={version}", cwd=tmp)
        got = list(tmp.glob("*.deb"))
        if len(got) != 1:
            raise PrerequisiteError(f"apt-get download {pkg}={version} gave no .deb file", hint="apt-get update")
        os.replace(got[0], target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _extract(deb: Path, dest: Path) -> Path:
    _need("dpkg-deb", "dpkg")
    proc = subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise PrerequisiteError(f"dpkg-deb -x {deb.name} failed: {proc.stderr.strip()[-300:]}")
    return dest


# -- kernel modules --------------------------------------------------------------

_MOD_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")


def _module_name(path: Path) -> str:
    name = path.name
    for suffix in _MOD_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name.replace("-", "_")


def _read_module(path: Path) -> bytes:
    """The module's ELF bytes, decompressed (busybox insmod wants plain .ko)."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        zstd = _need("zstd", "zstd")
        return subprocess.run([zstd, "-dc", str(path)], capture_output=True, check=True).stdout
    return data


def _modinfo(elf: bytes) -> dict[str, str]:
    """The ``.modinfo`` section of a 64-bit little-endian module (what ``modinfo`` shows)."""
    (shoff,) = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", elf, shoff + i * shentsize) for i in range(shnum)]
    strtab = sections[shstrndx][4]
    for sec in sections:
        name_at = strtab + sec[0]
        if elf[name_at : elf.index(b"\0", name_at)] == b".modinfo":
            raw = elf[sec[4] : sec[4] + sec[5]]
            pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
            return {k.decode(): v.decode(errors="replace") for k, v in pairs}
    return {}


def _module_order(moddir: Path, wanted=MODULES) -> list[tuple[str, bytes]]:
    """``[(name, elf_bytes)]`` for ``wanted`` and their dependencies, each after what it depends on."""
    index = {_module_name(p): p for p in moddir.rglob("*.ko*") if p.name.endswith(_MOD_SUFFIXES)}
    order: list[tuple[str, bytes]] = []
    done: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in done:
            return
        if name in chain:
            raise PrerequisiteError(f"kernel modules depend on each other in a loop: {' -> '.join(chain)}")
        if name not in index:
            raise PrerequisiteError(f"kernel module {name} not found in {moddir}")
        elf = _read_module(index[name])
        for dep in filter(None, _modinfo(elf).get("depends", "").split(",")):
            visit(dep.replace("-", "_"), (*chain, name))
        done.add(name)
        order.append((name, elf))

    for name in wanted:
        visit(name, ())
    return order


# -- the kernel image --------------------------------------------------------------


def _decompress(data: bytes) -> bytes:
    """Decompress a bzImage payload.  Its last 4 bytes are the plain size (little endian):
    gzip's own trailer, appended by the kernel's build for the other formats."""
    body = data[:-4]
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    if data[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(body)
    for magic, tool, package in ((b"\x02\x21\x4c\x18", "lz4", "lz4"), (b"\x28\xb5\x2f\xfd", "zstd", "zstd")):
        if data[:4] == magic:
            proc = subprocess.run([_need(tool, package), "-dc"], input=body, capture_output=True, timeout=300, check=False)
            if proc.returncode != 0:
                raise PrerequisiteError(f"{tool} could not decompress the kernel: {proc.stderr[-200:]!r}")
            return proc.stdout
    raise PrerequisiteError(f"unknown kernel compression (payload starts {data[:6].hex()})")


def _vmlinux(bzimage: Path, config: Path) -> bytes | None:
    """The uncompressed ELF kernel inside a bzImage, when it has a PVH entry (CONFIG_PVH=y).

    QEMU boots such an ELF directly (``-kernel vmlinux``, libvirt ``<kernel>``), skipping
    the decompressor: about 1 s faster under TCG, minutes faster under this machine's KVM.
    """
    if "CONFIG_PVH=y" not in config.read_text().splitlines():
        return None
    image = bzimage.read_bytes()
    setup = ((image[0x1F1] or 4) + 1) * 512
    offset, length = struct.unpack_from("<II", image, 0x248)
    payload = image[setup + offset : setup + offset + length]
    elf = _decompress(payload)
    (want,) = struct.unpack("<I", payload[-4:])
    if elf[:4] != b"\x7fELF" or len(elf) != want:
        raise PrerequisiteError(f"{bzimage.name}: the decompressed kernel is not the expected ELF")
    return elf


# -- programs and the archive ----------------------------------------------------


def _compile(gcc: str, name: str, out_dir: Path) -> Path:
    out = out_dir / name
    cmd = [gcc, *CFLAGS, "-I", str(SRC), "-o", str(out), str(SRC / f"{name}.c")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        raise PrerequisiteError(f"gcc could not build {name} (exit {proc.returncode}):\n{tail}", hint="apt-get install gcc libc6-dev")
    return out


def _assemble(debs: dict[str, Path], gcc: str, work: Path, echo) -> dict:
    """Extract, compile and pack into ``work/out``; returns facts for the manifest."""
    kernel_pkg = next(p for p in debs if p.startswith("linux-image-"))
    echo(f"linux guest: extracting {debs[kernel_pkg].name} and {debs[BUSYBOX].name}")
    kroot = _extract(debs[kernel_pkg], work / "kernel")
    broot = _extract(debs[BUSYBOX], work / "busybox")
    vmlinuz = next((kroot / "boot").glob("vmlinuz-*"))
    release = vmlinuz.name[len("vmlinuz-") :]
    try:
        vmlinux = _vmlinux(vmlinuz, kroot / "boot" / f"config-{release}")
    except PrerequisiteError as e:  # e.g. no lz4 tool: the bzImage still boots, slower
        echo(f"linux guest: no uncompressed kernel, the bzImage will be used ({e.message})")
        vmlinux = None
    modules = _module_order(kroot / "lib" / "modules" / release)

    echo(f"linux guest: compiling {', '.join(PROGRAMS)}")
    bin_dir = work / "bin"
    bin_dir.mkdir()
    programs = {name: _compile(gcc, name, bin_dir) for name in PROGRAMS}

    img = Initramfs()
    for d in GUEST_DIRS:
        img.dir(d)
    img.chardev("dev/console", 5, 1)  # the kernel opens it for /init before devtmpfs
    img.chardev("dev/null", 1, 3, 0o666)
    img.file("bin/busybox", (broot / "bin" / "busybox").read_bytes(), 0o755)
    img.symlink("bin/sh", "busybox")
    img.file("init", (SRC / "init.sh").read_bytes(), 0o755)
    for name, path in programs.items():
        img.file(f"bin/{name}", path.read_bytes(), 0o755)
    for name, elf in modules:
        img.file(f"lib/modules/{name}.ko", elf)
    img.file("etc/modules.order", "".join(f"{name}\n" for name, _ in modules).encode())
    initrd = img.to_gzip()

    out = work / "out"
    out.mkdir()
    shutil.copyfile(vmlinuz, out / "vmlinuz")
    if vmlinux:
        (out / "vmlinux").write_bytes(vmlinux)
    (out / "initrd.gz").write_bytes(initrd)
    return {
        "kernel_release": release,
        "modules": [name for name, _ in modules],
        "pvh": vmlinux is not None,
        "initrd_bytes": len(initrd),
        "bzimage_bytes": vmlinuz.stat().st_size,
        "vmlinux_bytes": len(vmlinux) if vmlinux else None,
        "programs": {n: p.stat().st_size for n, p in programs.items()},
    }


def _key(versions: dict[str, str], gcc: str) -> str:
    """Hash of everything the guest is built from."""
    h = hashlib.sha256(f"format={FORMAT}\n".encode())
    h.update(json.dumps(versions, sort_keys=True).encode())
    for path in sorted([*SRC.iterdir(), *HERE.glob("*.py")]):
        if path.is_file():
            h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(" ".join((*CFLAGS, *MODULES, *PROGRAMS)).encode())
    try:
        version = subprocess.run([gcc, "--version"], capture_output=True, text=True, timeout=30, check=False).stdout
    except OSError as e:
        raise PrerequisiteError(f"cannot run {gcc}: {e}", hint="apt-get install gcc") from None
    h.update(version.encode())
    return h.hexdigest()[:16]
