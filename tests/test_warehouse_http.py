"""The embedded warehouse's ClickHouse HTTP interface as the outside sees it: clickhouse-connect,
the official JDBC driver, curl as ClickHouse's documentation uses it, and what the reader
(and the writer) may not do. Another process owns the warehouse and keeps writing."""
from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import clickhouse_connect
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from tests.conftest import OtherOwner
from tracktor import ROOT
from tracktor.config.settings import ClickHouseSettings
from tracktor.warehouse.shared import owner_file, users_file

# The owner migrates, writes a day of events, and inserts a beat every 50 ms while the tests run.
OWNER_WRITES = """
import itertools, threading, time
from tests.test_warehouse import ev, write
warehouse.migrate(c, "tracktor")
write(c, "events", [ev(f"p{i}", "Site visit", i, app="demo") for i in range(5)] + [ev("p1", "Registration", 9, app="demo")])
c.command("CREATE TABLE default.beats (n UInt64) ENGINE = MergeTree ORDER BY n")
c.command("CREATE TABLE default.notes (a UInt32, s String) ENGINE = MergeTree ORDER BY a")
def beat():
    for n in itertools.count():
        c.insert("default.beats", [[n]], column_names=["n"])
        time.sleep(0.05)
threading.Thread(target=beat, daemon=True).start()
"""
METRIC = ("SELECT day, people, times FROM tracktor.metric_event_daily(app = {app:String}, event = {event:String}, "
          "from_ts = '2026-01-01 00:00:00', to_ts = '2026-01-02 00:00:00') ORDER BY day")


@dataclass
class Served:
    port: int
    writer: str
    reader: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, user: str = "reader", **kw):
        return clickhouse_connect.get_client(host="127.0.0.1", port=self.port, username=user,
                                             password=getattr(self, user), **kw)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    path = (tmp_path_factory.mktemp("bi") / "wh").resolve()
    owner = OtherOwner(ClickHouseSettings(dsn=f"chdb://{path}", http={"port": 0}), then=OWNER_WRITES)
    passwords = json.loads(users_file(path).read_text())  # what a BI user is given (docs/warehouse.md)
    yield Served(json.loads(owner_file(path).read_text())["port"], passwords["writer"], passwords["reader"])
    owner.stop()


def test_clickhouse_connect_queries_and_inserts_while_the_owner_writes(served):
    writer = served.client("writer")  # clickhouse-connect's defaults: compressed requests, a session id
    assert writer.query(METRIC, parameters={"app": "demo", "event": "Site visit"}).result_rows[0][1:] == (5, 5)
    writer.insert("default.notes", [[1, "one"], [2, "two"]], column_names=["a", "s"])
    assert writer.query("SELECT s FROM default.notes WHERE a = {a:UInt32}", parameters={"a": 2}).result_rows == [("two",)]
    frame = served.client().query_df("SELECT a, s FROM default.notes ORDER BY a")
    assert frame["s"].tolist() == ["one", "two"]
    table = served.client().query_arrow("SELECT count() AS n FROM tracktor.events")
    assert table.column("n").to_pylist() == [6]
    beats = writer.command("SELECT count() FROM default.beats")
    time.sleep(0.3)
    assert writer.command("SELECT count() FROM default.beats") > beats  # the owner is writing all along


def test_the_reader_reads_views_but_cannot_write(served):
    reader = served.client()
    assert reader.query(METRIC, parameters={"app": "demo", "event": "Registration"}).result_rows[0][1:] == (1, 1)
    for statement in ("INSERT INTO default.notes VALUES (9, 'no')", "CREATE TABLE default.x (a Int8) ENGINE = Memory",
                      "DROP TABLE default.notes", "ALTER TABLE default.notes DELETE WHERE 1",
                      "SELECT 1 SETTINGS readonly = 0"):
        with pytest.raises(DatabaseError, match=r"Code: 164\..*READONLY"):
            reader.command(statement)
    with pytest.raises(DatabaseError, match=r"Code: 164\..*READONLY"):
        reader.insert("default.notes", [[9, "no"]], column_names=["a", "s"])
    assert served.client("writer").command("SELECT count() FROM default.notes WHERE a = 9") == 0


@pytest.mark.parametrize("statement", [
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT * FROM FILE('/etc/passwd', 'LineAsString')",
    "SELECT file('/etc/hostname')",
    "SELECT * FROM url('http://127.0.0.1:9/', 'CSV', 'a String')",
    "SELECT * FROM s3('http://127.0.0.1:9/b/x.csv', 'CSV', 'a String')",
    "SELECT * FROM remote('127.0.0.1:9000', system.one)",
    "SELECT * FROM executable('id', 'TSV', 'a String')",
    "SELECT * FROM loop(numbers(1)) LIMIT 1",
    "SELECT * FROM default.notes WHERE a IN (SELECT length(line) FROM file('/etc/passwd', 'LineAsString'))",
    "SELECT 1 INTO OUTFILE '{tmp}/out.csv'",
    "DESCRIBE TABLE (SELECT 1 AS `echo hi`) INTO OUTFILE '{tmp}/rc' APPEND FORMAT TSVRaw",
    "SHOW TABLES FROM default INTO OUTFILE '{tmp}/t'",
    "EXISTS TABLE default.notes INTO OUTFILE '{tmp}/e'",
    "EXPLAIN SELECT 1 INTO OUTFILE '{tmp}/x'",
    "SELECT 1; SELECT file('/etc/passwd')",
    "SELECT * FROM default.notes FORMAT Protobuf SETTINGS format_schema = '/etc/passwd:x'",
    "SYSTEM FLUSH LOGS",
    "KILL QUERY WHERE 1",
    "INSERT INTO FUNCTION file('{tmp}/out.csv', 'CSV', 'a Int8') VALUES (1)",
    "INSERT INTO default.notes (s) FROM INFILE '/etc/hostname' FORMAT LineAsString",
    "CREATE TABLE default.f (a String) ENGINE = File(CSV, '{tmp}/out.csv')",
    "CREATE TABLE default.u AS url('http://127.0.0.1:9/', 'CSV', 'a String')",
    "CREATE DATABASE fs ENGINE = Filesystem('/')",
    "CREATE TABLE default.d (a Int8) ENGINE = MergeTree ORDER BY a SETTINGS disk = disk(type = local, path = '{tmp}/d/')",
    "CREATE DICTIONARY default.p (a String) PRIMARY KEY a SOURCE(FILE(path '/etc/passwd' format 'CSV')) "
    "LAYOUT(FLAT()) LIFETIME(0)",
    "ATTACH TABLE default.a FROM '{tmp}/a' (a Int8) ENGINE = Memory",
    "BACKUP TABLE default.notes TO Disk('default', 'b')",
])
@pytest.mark.parametrize("user", ["reader", "writer"])
def test_no_user_reaches_files_urls_or_the_server(served, tmp_path, user, statement):
    with pytest.raises(DatabaseError, match=r"Code: (497|164|62)\."):
        served.client(user).command(statement.format(tmp=tmp_path))
    assert not list(tmp_path.iterdir())  # nothing was written


def test_words_in_string_literals_are_data(served):
    """The guard's text checks skip literals: an event named after a disk or a setting is fine."""
    rows = served.client("reader").query("SELECT 'Replaced disk (SSD)', 'x INTO OUTFILE y', 'format_schema'").result_rows
    assert rows == [("Replaced disk (SSD)", "x INTO OUTFILE y", "format_schema")]


def test_a_setting_that_reads_files_is_refused_in_the_url_too(served):
    with pytest.raises(DatabaseError, match=r"Code: 497\..*format_schema"):
        served.client().query("SELECT 1", settings={"format_schema": "/etc/passwd:x"})


def test_wrong_or_missing_credentials_are_refused(served):
    with pytest.raises(DatabaseError, match=r"Code: 516\..*AUTHENTICATION_FAILED"):
        clickhouse_connect.get_client(host="127.0.0.1", port=served.port, username="reader", password="guess")
    with pytest.raises(DatabaseError, match=r"Code: 516\."):
        clickhouse_connect.get_client(host="127.0.0.1", port=served.port)  # the default user, no password


def curl(*args: str, data: bytes | None = None) -> tuple[int, dict, bytes]:
    """(status, headers, body) of `curl args…`, with `data` on its standard input."""
    out = subprocess.run(["curl", "-sS", "-i", *args], input=data, capture_output=True, timeout=60, check=True).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    while head.startswith(b"HTTP/1.1 100"):  # curl's Expect: 100-continue
        head, _, body = body.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


@pytest.mark.skipif(not shutil.which("curl"), reason="needs curl")
def test_curl_as_clickhouse_documents_it(served):
    url, auth = served.url, ["-u", f"writer:{served.writer}"]
    assert curl(f"{url}/ping")[2] == b"Ok.\n"
    status, headers, body = curl(f"{url}/?query=SELECT%201", *auth)
    assert (status, body, headers["x-clickhouse-format"]) == (200, b"1\n", "TabSeparated")
    assert {"x-clickhouse-summary", "x-clickhouse-timezone", "x-clickhouse-query-id",
            "x-clickhouse-server-display-name"} <= headers.keys()
    assert curl(f"{url}/", *auth, "--data-binary", "@-", data=b"SELECT 1\n")[2] == b"1\n"
    assert curl(f"{url}/?param_id=2&param_phrase=test", *auth, "-d",
                "SELECT {id:UInt8} AS id, {phrase:String} AS phrase FORMAT JSONEachRow")[2] == b'{"id":2,"phrase":"test"}\n'
    insert = "INSERT INTO default.notes FORMAT JSONEachRow".replace(" ", "%20")
    rows = b'{"a": 10, "s": "curl"}\n{"a": 11, "s": "curl"}\n'
    assert curl(f"{url}/?query={insert}", *auth, "--data-binary", "@-", data=rows)[0] == 200
    assert curl(f"{url}/?query={insert}", *auth, "-H", "Content-Encoding: gzip", "--data-binary", "@-",
                data=gzip.compress(b'{"a": 12, "s": "gzip"}\n'))[0] == 200
    assert curl(f"{url}/", *auth, "-d", "INSERT INTO default.notes VALUES (13, 'values')")[0] == 200
    status, headers, body = curl(f"{url}/?default_format=CSVWithNames", *auth, "-d",
                                 "SELECT a, s FROM default.notes WHERE a >= 10 ORDER BY a")
    assert headers["x-clickhouse-format"] == "CSVWithNames" and headers["content-type"].startswith("text/csv")
    assert body == b'"a","s"\n10,"curl"\n11,"curl"\n12,"gzip"\n13,"values"\n'
    status, headers, body = curl(f"{url}/?query=SELECT%20*%20FROM%20nowhere", *auth)
    assert status == 404 and headers["x-clickhouse-exception-code"] == "60" and body.startswith(b"Code: 60. DB::Exception:")
    assert curl(f"{url}/?query=SELECT%201&user=reader&password={served.reader}")[2] == b"1\n"
    assert curl(f"{url}/?query=SELECT%201", "-H", "X-ClickHouse-User: reader", "-H",
                f"X-ClickHouse-Key: {served.reader}")[2] == b"1\n"
    status, headers, body = curl(f"{url}/?query=SELECT%201", "-u", "reader:guess")
    assert (status, headers["x-clickhouse-exception-code"]) == (403, "516") and b"AUTHENTICATION_FAILED" in body
    status, headers, _ = curl(f"{url}/?query=SELECT%201")
    assert status == 401 and headers["x-clickhouse-exception-code"] == "516"
    status, _, body = curl(f"{url}/?query=SELECT%201&decompress=1", *auth)  # ClickHouse's own blocks: said, not hung
    assert status == 501 and b"NOT_IMPLEMENTED" in body


def test_a_body_that_does_not_decompress_is_refused_and_the_endpoint_goes_on(served):
    insert = "INSERT%20INTO%20default.notes%20FORMAT%20JSONEachRow"
    req = urllib.request.Request(f"{served.url}/?query={insert}&user=writer&password={served.writer}",
                                 data=b"\x1f\x8b not gzip at all", headers={"Content-Encoding": "gzip"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=30)
    assert refused.value.headers["X-ClickHouse-Exception-Code"] == "354"
    assert b"CANNOT_DECOMPRESS" in refused.value.read()
    assert served.client().command("SELECT 5") == 5


@pytest.mark.parametrize("fmt", ["Native", "RowBinaryWithNamesAndTypes", "TabSeparatedWithNames", "JSON",
                                 "JSONEachRow", "CSVWithNames"])
def test_formats_are_chdbs_own(served, fmt):
    """Each format's bytes are ClickHouse's, whether asked in the URL (default_format) or in SQL."""
    query = "SELECT a, s FROM default.notes WHERE a < 3 ORDER BY a"
    with urllib.request.urlopen(f"{served.url}/?default_format={fmt}&user=reader&password={served.reader}",
                                data=query.encode(), timeout=60) as resp:
        raw = resp.read()
        assert resp.headers["X-ClickHouse-Format"] == fmt
    asked = served.client().raw_query(query, fmt=fmt)  # FORMAT in the SQL
    if fmt == "JSON":  # its statistics differ from one run to the next
        raw, asked = (json.loads(r)["data"] for r in (raw, asked))
    assert raw == asked and "two" in str(raw)


def test_the_jdbc_driver_reads_a_metric_view(served, tmp_path):
    jars = ROOT / ".cache" / "jars" / "jdbc"
    if not shutil.which("javac") or not jars.is_dir():
        pytest.skip("needs javac and the JDBC driver (bin/tracktor setup)")
    (tmp_path / "Query.java").write_text("""
        import java.sql.*;
        public class Query {  // the rows of a query, tab-separated, as a BI tool's JDBC connection reads them
            public static void main(String[] a) throws Exception {
                try (Connection c = DriverManager.getConnection(a[0], a[1], a[2]);
                     ResultSet r = c.createStatement().executeQuery(a[3])) {
                    int n = r.getMetaData().getColumnCount();
                    while (r.next()) {
                        StringBuilder b = new StringBuilder();
                        for (int i = 1; i <= n; i++) b.append(i > 1 ? "\\t" : "").append(r.getString(i));
                        System.out.println(b);
                    }
                }
            }
        }""")
    subprocess.run(["javac", "-d", str(tmp_path), str(tmp_path / "Query.java")], check=True, timeout=120)
    sql = METRIC.replace("{app:String}", "'demo'").replace("{event:String}", "'Site visit'")

    def java(url: str):
        return subprocess.run(["java", "-cp", f"{tmp_path}:{jars}/*", "Query", url, "reader", served.reader, sql],
                              capture_output=True, text=True, timeout=120)
    out = java(f"jdbc:clickhouse://127.0.0.1:{served.port}/tracktor?compress=0")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["2026-01-01\t5\t5"]
    default = java(f"jdbc:clickhouse://127.0.0.1:{served.port}/tracktor")  # compress=1: refused, and says why
    assert default.returncode != 0 and "compress=1" in default.stderr and "NOT_IMPLEMENTED" in default.stderr
