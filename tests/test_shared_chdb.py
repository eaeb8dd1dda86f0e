"""The embedded warehouse shared between processes: one owner, the others reach it through
its ClickHouse HTTP interface, and whoever comes next takes over when the owner goes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import clickhouse_connect
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from tests.conftest import OtherOwner
from tracktor import ROOT, warehouse
from tracktor.config.settings import ClickHouseSettings
from tracktor.warehouse.shared import OwnerClient, SharedClient, owner_file, users_file, wait_released


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
    for private in (owner_file(path.resolve()), users_file(path.resolve())):
        assert oct(private.stat().st_mode & 0o777) == "0o600"
    assert info["pid"] == os.getpid() and info["port"] == owner.endpoint.port and info["user"] == "writer"
    out = other_process(path, """
        from datetime import date, datetime, timezone
        from clickhouse_connect.driver.httpclient import HttpClient
        from tracktor.warehouse.shared import SharedClient
        assert isinstance(client, SharedClient) and isinstance(client.remote, HttpClient)  # ClickHouse's HTTP client
        client.insert("t", [[date(2026, 1, 2), datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=timezone.utc), "x"]], column_names=["d", "ts", "s"])
        rows = client.query("SELECT d, ts, s FROM t WHERE s = {s:String}", parameters={"s": "x"}).result_rows
        print(repr(rows))
    """)
    assert out.strip() == repr(owner.query("SELECT d, ts, s FROM t").result_rows)  # the same values either way
    assert "datetime.date(2026, 1, 2)" in out and "'x'" in out
    owner.close()
    assert not owner_file(path.resolve()).exists()


def test_errors_come_back_to_the_caller_and_the_owner_goes_on(tmp_path):
    path = tmp_path / "wh"
    owner = warehouse.connect(f"chdb://{path}")
    try:
        out = other_process(path, """
            from clickhouse_connect.driver.exceptions import DatabaseError
            try:
                client.query("SELECT * FROM no_such_table")
            except DatabaseError as e:
                print("refused:", e)
        """)
        assert "refused:" in out and "Code: 60" in out and "no_such_table" in out
        assert owner.query("SELECT 1").result_rows == [(1,)]
    finally:
        owner.close()


def test_a_wrong_password_is_refused(tmp_path):
    path = tmp_path / "wh"
    owner = warehouse.connect(f"chdb://{path}")
    try:
        with pytest.raises(DatabaseError, match="516.*AUTHENTICATION_FAILED"):
            clickhouse_connect.get_client(host="127.0.0.1", port=owner.endpoint.port, username="writer", password="guess")
    finally:
        owner.close()


def test_configured_passwords_replace_the_generated_ones(tmp_path):
    settings = ClickHouseSettings(dsn=f"chdb://{tmp_path / 'wh'}", http={"port": 0},
                                  users={"reader": {"password": "bi-secret"}})
    owner = warehouse.connect(settings)
    try:
        bi = clickhouse_connect.get_client(host="127.0.0.1", port=owner.endpoint.port, username="reader",
                                           password="bi-secret")
        assert bi.query("SELECT 2").result_rows == [(2,)]
        generated = json.loads(users_file((tmp_path / "wh").resolve()).read_text())
        with pytest.raises(DatabaseError, match="516"):
            clickhouse_connect.get_client(host="127.0.0.1", port=owner.endpoint.port, username="reader",
                                          password=generated["reader"])
    finally:
        owner.close()


@pytest.mark.parametrize("leaves", ["closes", "is killed"])
def test_when_the_owner_leaves_a_reader_takes_over(tmp_path, leaves):
    dsn = f"chdb://{tmp_path / 'wh'}"
    other = OtherOwner(dsn)
    reader = warehouse.connect(dsn)
    assert isinstance(reader, SharedClient)
    reader.command("CREATE TABLE t (n UInt8) ENGINE = MergeTree ORDER BY n")
    reader.insert("t", [[7]], column_names=["n"])
    assert reader.query("SELECT n FROM t").result_rows == [(7,)]
    other.stop() if leaves == "closes" else other.kill()  # SIGKILL: the kernel drops its lock
    assert reader.query("SELECT n FROM t").result_rows == [(7,)]  # the next call takes the path
    assert isinstance(reader.local, OwnerClient) and json.loads(owner_file((tmp_path / "wh").resolve()).read_text())[
        "pid"] == os.getpid()
    reader.close()


def test_an_owner_that_closes_answers_the_query_it_runs_first(tmp_path):
    import threading
    import time

    dsn = f"chdb://{tmp_path / 'wh'}"
    other = OtherOwner(dsn)
    reader = warehouse.connect(dsn)
    answers = []
    slow = threading.Thread(target=lambda: answers.append(reader.query("SELECT sleep(2)").result_rows))
    slow.start()
    time.sleep(0.5)
    other.stop()  # waits for the query's session: the next owner must be able to open the engine
    slow.join(30)
    assert answers == [[(0,)]]
    assert reader.query("SELECT 3").result_rows == [(3,)] and isinstance(reader.local, OwnerClient)
    reader.close()


def test_the_same_process_shares_its_own_connection(tmp_path):
    a = warehouse.connect(f"chdb://{tmp_path / 'wh'}")
    b = warehouse.connect(f"chdb://{tmp_path / 'wh'}")
    assert a is b
    a.close()
    assert b.query("SELECT 2").result_rows == [(2,)]  # still open for the second user
    b.close()


def test_waiting_for_the_owner_to_let_go(tmp_path):
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
