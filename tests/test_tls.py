"""TLS end to end on the lab: libvirt connections over qemu+tls://, QEMU's
migration stream encrypted by the ``tls`` flag, and a client without a
certificate the hosts trust refused with a message that says what to do."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest
from cli_runner import migflow

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parent.parent


def test_lab_up_tls_proves_both_hosts_answer_over_tls(lab):
    r = migflow("lab", "up", "--tls")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [ln for ln in r.stdout.splitlines() if "answers over TLS" in ln]
    assert [ln.split()[1] for ln in lines] == ["mflab-a", "mflab-b"], r.stdout
    assert all("qemu+tls://198.18.0." in ln and "pkipath=/var/lib/migflow-lab/pki/client" in ln for ln in lines), lines


def test_tls_workflow_encrypts_the_stream_both_ways(shipped_run):
    db, proc = shipped_run("tls")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with duckdb.connect(str(db), read_only=True) as con:
        hosts = con.execute("SELECT DISTINCT source_uri, destination_uri FROM runs").fetchall()
        legs = con.execute(
            """SELECT scenario, leg, m.status, source, destination, memory_verified,
                      in_force->'$.parameters'->>'tls-creds', in_force->'$.parameters'->>'tls-hostname'
               FROM migrations m JOIN runs USING (run_id) ORDER BY run_id, leg"""
        ).fetchall()
    assert hosts == [("qemu+tls://198.18.0.1/system?pkipath=***", "qemu+tls://198.18.0.2/system?pkipath=***")], hosts
    assert len(legs) == 8, legs  # 2 scenarios x 2 repetitions, there and back
    by_scenario: dict = {}
    for scenario, leg, status, source, destination, verified, creds, tls_host in legs:
        assert status == "completed" and verified is True, (scenario, leg, status, verified)
        assert source.startswith("qemu+tls://") and destination.startswith("qemu+tls://")
        by_scenario.setdefault(scenario, []).append((leg, creds, tls_host))
    assert set(by_scenario) == {"flags=tls", "flags=none"}, by_scenario
    # QEMU's own view while the leg ran: libvirt's TLS object in place, verified against the destination's address
    for leg, creds, tls_host in by_scenario["flags=tls"]:
        assert creds and creds.startswith("objlibvirt_migrate_tls"), (leg, creds)
        assert tls_host == ("198.18.0.2" if leg == 1 else "198.18.0.1"), (leg, tls_host)
    for leg, creds, _host in by_scenario["flags=none"]:
        assert not creds, (leg, creds)


@pytest.mark.parametrize(
    "files, words, hint",
    [
        (["cacert.pem"], "Unable to read TLS confirmation", "the host refused this client's certificate"),  # CA only: no client certificate
        ([], "Cannot read CA certificate", "a TLS client needs cacert.pem, clientcert.pem and clientkey.pem"),
    ],
    ids=["no-client-certificate", "no-ca"],
)
def test_client_without_a_trusted_certificate_is_refused(lab, tmp_path, files, words, hint):
    pki = tmp_path / "pki"
    pki.mkdir()
    for f in files:
        shutil.copy(f"/var/lib/migflow-lab/pki/client/{f}", pki / f)
    src, dst = (f"qemu+tls://198.18.0.{n}/system?pkipath={pki}" for n in (1, 2))
    r = migflow("run", str(ROOT / "workflows" / "tls.toml"), "--src", src, "--dst", dst, "--results", str(tmp_path / "r.duckdb"), "-n", "1")
    assert r.returncode == 4, r.stdout + r.stderr  # a host unreachable: nothing ran
    assert "Traceback" not in r.stderr
    assert f"migflow: cannot connect to qemu+tls://198.18.0.1/system?pkipath=***: {words}" in r.stderr, r.stderr
    assert f"hint: {hint}" in r.stderr.replace("\n  ", " "), r.stderr
    assert str(pki) not in r.stderr + r.stdout  # pkipath is redacted
    assert json.loads(migflow("lab", "status", "--json").stdout)["up"]
