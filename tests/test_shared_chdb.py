"""The embedded warehouse shared between processes: one owner, the others forward to it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tracktor import ROOT, warehouse
from tracktor.warehouse.shared import OwnerClient, OwnerError, RemoteClient, owner_file


def other_process(path, code: str) -> str:
    """Run `code` with `client` connected to the warehouse at `path` in a fresh interpreter."""
    script = "from tracktor import warehouse\nclient = warehouse.connect(%r)\n" % f"chdb://{path}" + textwrap.dedent(code)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYFLINK")}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_a_second_process_reads_and_writes_through_the_owner(tmp_path):
    path = tmp_path / "wh"
    owner = warehouse.connect(f"chdb://{path}")
    assert isinstance(owner, OwnerClient)
    owner.command("CREATE TABLE t (d Date, ts DateTime64(3, 'UTC'), s String) ENGINE = MergeTree ORDER BY d")
    info = json.loads(owner_file(path.resolve()).read_text())
    assert oct(owner_file(path.resolve()).stat().st_mode & 0o777) == "0o600" and info["pid"] == os.getpid()
    out = other_process(path, """
        from datetime import date, datetime, timezone
        from tracktor.warehouse.shared import RemoteClient
        assert isinstance(client, RemoteClient)
        client.insert("t", [[date(2026, 1, 2), datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=timezone.utc), "x"]], column_names=["d", "ts", "s"])
        rows = client.query("SELECT d, ts, s FROM t WHERE s = {s:String}", parameters={"s": "x"}).result_rows
        print(repr(rows))
    """)
    assert "datetime.date(2026, 1, 2)" in out and "'x'" in out
    assert owner.query("SELECT count() FROM t").result_rows == [(1,)]
    owner.close()
    assert not owner_file(path.resolve()).exists()


def test_errors_come_back_to_the_caller_and_the_owner_goes_on(tmp_path):
    path = tmp_path / "wh"
    owner = warehouse.connect(f"chdb://{path}")
    try:
        out = other_process(path, """
            from tracktor.warehouse.shared import OwnerError
            try:
                client.query("SELECT * FROM no_such_table")
            except OwnerError as e:
                print("refused:", e)
        """)
        assert "refused:" in out and "no_such_table" in out
        assert owner.query("SELECT 1").result_rows == [(1,)]
    finally:
        owner.close()


def test_a_wrong_token_is_refused(tmp_path):
    path = tmp_path / "wh"
    owner = warehouse.connect(f"chdb://{path}")
    try:
        intruder = RemoteClient(path.resolve())
        intruder.address = {**json.loads(owner_file(path.resolve()).read_text()), "token": "guess"}
        with pytest.raises(OwnerError, match="wrong token"):
            intruder.query("SELECT 1")
    finally:
        owner.close()


def test_when_the_owner_leaves_a_reader_takes_over(tmp_path):
    path = tmp_path / "wh"
    first = warehouse.connect(f"chdb://{path}")
    first.command("CREATE TABLE t (n UInt8) ENGINE = MergeTree ORDER BY n")
    first.insert("t", [[7]], column_names=["n"])
    reader = RemoteClient(path.resolve())
    assert reader.query("SELECT n FROM t").result_rows == [(7,)]
    first.close()  # the owner goes; the reader's next call finds nobody and takes the path
    assert reader.query("SELECT n FROM t").result_rows == [(7,)]
    assert reader.local is not None and owner_file(path.resolve()).exists()
    reader.close()


def test_the_same_process_shares_its_own_connection(tmp_path):
    a = warehouse.connect(f"chdb://{tmp_path / 'wh'}")
    b = warehouse.connect(f"chdb://{tmp_path / 'wh'}")
    assert a is b
    a.close()
    assert b.query("SELECT 2").result_rows == [(2,)]  # still open for the second user
    b.close()


def test_waiting_for_the_owner_to_let_go(tmp_path):
    from tracktor.warehouse.shared import wait_released
    path = tmp_path / "wh"
    wait_released(path)  # nobody ever opened it
    proc = subprocess.Popen([sys.executable, "-c", "import time\nfrom tracktor import warehouse\n"
                             f"c = warehouse.connect('chdb://{path}')\nprint('owned', flush=True)\ntime.sleep(1.5)\nc.close()"],
                            cwd=ROOT, env={k: v for k, v in os.environ.items() if not k.startswith("PYFLINK")},
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "owned"
    with pytest.raises(TimeoutError):
        wait_released(path, timeout_s=0.3)
    wait_released(path, timeout_s=30)
    assert proc.wait(30) == 0
    mine = warehouse.connect(f"chdb://{path}")
    assert isinstance(mine, OwnerClient)  # free for the taking
    mine.close()
