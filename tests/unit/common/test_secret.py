"""The cluster secret's resolution and its race-free creation (common/secret.py, issue 10 item 9)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from common.secret import FILE_NAME, SecretError, cluster_secret

REPO = Path(__file__).resolve().parents[3]


def test_created_once_private_and_then_read(tmp_path):
    first = cluster_secret(None, directory=tmp_path, env={})
    path = tmp_path / FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 32 and path.read_text().strip() == first
    assert cluster_secret(None, directory=tmp_path, env={}) == first
    assert [p.name for p in tmp_path.iterdir()] == [FILE_NAME]  # no temporary file left


def test_precedence(tmp_path):
    assert cluster_secret(None, insecure=True, directory=tmp_path, env={}) == ""
    assert cluster_secret("given", directory=tmp_path, env={"SEASYNC_SECRET": "env"}) == "given"
    assert cluster_secret("", directory=tmp_path, env={}) == ""  # an explicitly empty secret: open
    assert cluster_secret(None, directory=tmp_path, env={"SEASYNC_SECRET": "env"}) == "env"
    assert cluster_secret(None, directory=tmp_path, env={"SEASYNC_SECRET": ""}) == ""
    assert cluster_secret(None, directory=tmp_path, env={"SEASYNC_INSECURE": "1", "SEASYNC_SECRET": "x"}) == ""
    other = tmp_path / "elsewhere"
    assert cluster_secret(None, directory=tmp_path, env={"SEASYNC_SECRET_FILE": str(other)}) == \
        other.read_text().strip()
    assert not (tmp_path / FILE_NAME).exists()


def test_processes_starting_together_agree_on_one_secret(tmp_path):
    code = ("import sys; from common.secret import cluster_secret; "
            "print(cluster_secret(None, directory=sys.argv[1], env={}))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              env=env) for _ in range(8)]
    secrets = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(secrets) == 1 and "" not in secrets
    assert (tmp_path / FILE_NAME).read_text().strip() in secrets


def test_an_empty_file_is_waited_for_then_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("common.secret.READ_RETRY", 0.1)
    (tmp_path / FILE_NAME).touch(mode=0o600)
    with pytest.raises(SecretError, match="is empty"):
        cluster_secret(None, directory=tmp_path, env={})


def test_a_file_others_may_read_is_refused(tmp_path):
    path = tmp_path / FILE_NAME
    path.write_text("s3cret\n")
    path.chmod(0o644)
    with pytest.raises(SecretError, match="chmod 600"):
        cluster_secret(None, directory=tmp_path, env={})
    path.chmod(0o600)
    assert cluster_secret(None, directory=tmp_path, env={}) == "s3cret"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the file to another user")
def test_a_file_of_another_user_is_refused(tmp_path):
    path = tmp_path / FILE_NAME
    path.write_text("chosen-by-someone-else\n")
    path.chmod(0o600)
    os.chown(path, 12345, -1)
    with pytest.raises(SecretError, match="another user"):
        cluster_secret(None, directory=tmp_path, env={})

