"""The lab's private certificate authority: TLS for libvirtd and for QEMU's migration stream.

``migflow lab up`` creates, with ``openssl``, under ``LAB_ROOT``:

::

    pki/ca-cert.pem, ca-key.pem        the lab's CA (never leaves LAB_ROOT)
    pki/client/                        a client certificate, in libvirt's pkipath layout:
        cacert.pem clientcert.pem clientkey.pem   used by migflow (``?pkipath=``) and, in a
                                       peer-to-peer migration, by the source libvirtd
    <host>/tls/                        libvirtd's listener (libvirtd.conf key/cert/ca_file)
        cacert.pem servercert.pem serverkey.pem   the server certificate names the host's address
    <host>/migrate-tls/                QEMU's migration TLS (qemu.conf migrate_tls_x509_cert_dir):
        ca-cert.pem server-cert.pem server-key.pem client-cert.pem client-key.pem

Nothing is written to ``/etc/pki``: the machine's own TLS set-up stays as it was.
Certificates follow libvirt's checks (docs/kbase/tlscerts.rst): a CA with
``CA:TRUE`` and ``keyCertSign``; servers with ``serverAuth`` and an IP
subjectAltName (clients connect by address); the client with ``clientAuth``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from migflow.errors import HostError

from .state import LAB_ROOT
from .topology import LabHost

__all__ = ["CLIENT_DIR", "PKI_DIR", "create", "libvirtd_files", "migrate_dir", "remove"]

PKI_DIR = LAB_ROOT / "pki"
CLIENT_DIR = PKI_DIR / "client"
DAYS = 3650
SUBJECT = "/O=migflow lab"

_SERVER_EXT = """basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = IP:{address}
"""
_CLIENT_EXT = """basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
"""


def libvirtd_files(h: LabHost) -> dict[str, Path]:
    """libvirtd.conf's ``key_file``, ``cert_file`` and ``ca_file`` for host ``h``."""
    base = LAB_ROOT / h.name / "tls"
    return {"key_file": base / "serverkey.pem", "cert_file": base / "servercert.pem", "ca_file": base / "cacert.pem"}


def migrate_dir(h: LabHost) -> Path:
    """qemu.conf's ``migrate_tls_x509_cert_dir`` for host ``h``."""
    return LAB_ROOT / h.name / "migrate-tls"


def _openssl(*args: str) -> None:
    try:
        proc = subprocess.run(["openssl", *args], check=False, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise HostError("openssl is not installed: the lab needs it for its TLS certificates", hint="sh scripts/install-prereqs.sh") from None
    if proc.returncode != 0:
        raise HostError(f"openssl {args[0]} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")


def _issue(ca_cert: Path, ca_key: Path, cn: str, ext: str, cert: Path, key: Path) -> None:
    """A key and a certificate for ``cn``, signed by the CA, with extensions ``ext``."""
    with tempfile.TemporaryDirectory(dir=PKI_DIR) as tmp:
        csr, extfile = Path(tmp) / "req.csr", Path(tmp) / "ext.cnf"
        extfile.write_text(ext)
        _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"{SUBJECT}/CN={cn}")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key), "-set_serial", f"0x{os.urandom(8).hex()}",
                 "-days", str(DAYS), "-sha256", "-extfile", str(extfile), "-out", str(cert))  # fmt: skip
    os.chmod(key, 0o600)


def create(hosts: tuple[LabHost, ...]) -> None:
    """Create the CA and every certificate (replacing earlier ones): a few hundred ms."""
    shutil.rmtree(PKI_DIR, ignore_errors=True)
    CLIENT_DIR.mkdir(parents=True)
    os.chmod(PKI_DIR, 0o700)
    ca_cert, ca_key = PKI_DIR / "ca-cert.pem", PKI_DIR / "ca-key.pem"
    _openssl("req", "-x509", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca_cert), "-days", str(DAYS),
             "-sha256", "-subj", f"{SUBJECT}/CN=migflow lab CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    os.chmod(ca_key, 0o600)
    _issue(ca_cert, ca_key, "migflow lab client", _CLIENT_EXT, CLIENT_DIR / "clientcert.pem", CLIENT_DIR / "clientkey.pem")
    shutil.copyfile(ca_cert, CLIENT_DIR / "cacert.pem")
    for h in hosts:
        files = libvirtd_files(h)
        files["key_file"].parent.mkdir(parents=True, exist_ok=True)
        _issue(ca_cert, ca_key, h.address, _SERVER_EXT.format(address=h.address), files["cert_file"], files["key_file"])
        shutil.copyfile(ca_cert, files["ca_file"])
        mig = migrate_dir(h)
        mig.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ca_cert, mig / "ca-cert.pem")
        shutil.copyfile(files["cert_file"], mig / "server-cert.pem")
        shutil.copyfile(files["key_file"], mig / "server-key.pem")
        shutil.copyfile(CLIENT_DIR / "clientcert.pem", mig / "client-cert.pem")
        shutil.copyfile(CLIENT_DIR / "clientkey.pem", mig / "client-key.pem")
        for k in ("server-key.pem", "client-key.pem"):
            os.chmod(mig / k, 0o600)


def remove() -> None:
    """Remove the CA and the client certificate (the hosts' copies go with their folders)."""
    shutil.rmtree(PKI_DIR, ignore_errors=True)
