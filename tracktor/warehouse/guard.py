"""What a user may run through the embedded warehouse's HTTP interface (docs/warehouse.md).

chDB runs as the owning process, with its file system and network, and has no users of its
own: `SELECT file('/etc/passwd')`, `url(...)` or `INTO OUTFILE` would work. So every
statement is parsed by ClickHouse itself first (`formatQuery`, which also refuses several
statements in one text) and its AST (`EXPLAIN AST`) is checked here; what runs is the
text ClickHouse formatted, so what was checked is what runs.

Refused for everyone: table functions, table engines and database engines that reach
outside the warehouse (all that chDB knows except SAFE_NAMES), the scalar functions in
DENIED_FUNCTIONS, dictionaries (their sources reach files and hosts), INTO OUTFILE, a
client's FROM INFILE, settings that read or write files (DENIED_SETTINGS), and every
statement kind not in WRITER_STATEMENTS. The reader may run only READER_STATEMENTS, and
its session is readonly=2 besides, so ClickHouse refuses a write itself.
"""
from __future__ import annotations

import re

# Table functions and engines that stay inside the warehouse (lower case).
SAFE_NAMES = frozenset({
    "numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateseries", "primes", "values",
    "sqlstandardvalues", "null", "view", "merge", "generaterandom", "format",
    "mergetree", "replacingmergetree", "summingmergetree", "aggregatingmergetree", "collapsingmergetree",
    "versionedcollapsingmergetree", "coalescingmergetree", "graphitemergetree", "memory", "log", "tinylog",
    "stripelog", "set", "join", "buffer", "materializedview", "alias",
    "atomic", "ordinary", "lazy",  # database engines
})
DENIED_FUNCTIONS = frozenset({"file", "catboostevaluate", "disk"})  # scalar ones that read files or make disks
DENIED_SETTINGS = re.compile(  # settings naming files to read or write, or the engine of a table left unnamed
    r"format_schema\w*|format_template_\w+|output_format_schema|default_table_engine|default_temporary_table_engine",
    re.IGNORECASE)

RESULT_STATEMENTS = ("Select", "Show", "Describe", "Exists", "Explain")  # AST labels' prefixes; these answer rows
READER_STATEMENTS = RESULT_STATEMENTS + ("Set", "UseQuery")
WRITER_STATEMENTS = READER_STATEMENTS + (
    "InsertQuery", "CreateQuery", "AlterQuery", "DropQuery", "Rename", "TruncateQuery", "OptimizeQuery",
    "DeleteQuery", "UpdateQuery", "CheckQuery", "CreateSQLFunctionQuery", "DropFunctionQuery")


class Refused(Exception):
    """A statement this user may not run: ClickHouse's code and name, and why."""

    def __init__(self, code: int, name: str, message: str):
        super().__init__(message)
        self.code, self.name = code, name


def _denied(user: str, what: str) -> Refused:
    return Refused(497, "ACCESS_DENIED", f"{user}: Not enough privileges: {what}")


def outward_names(engine) -> frozenset[str]:
    """Every table function, table engine and database engine the engine knows that is not
    in SAFE_NAMES: a new one in a later chDB is refused until it is looked at."""
    names = engine.query("SELECT name FROM system.table_functions UNION ALL SELECT name FROM system.table_engines "
                         "UNION ALL SELECT name FROM system.database_engines", "TabSeparatedRaw").bytes()
    return frozenset(n.lower() for n in names.decode().split()) - SAFE_NAMES


_TOKEN = re.compile(rb"""(?P<skip>\s+|--[^\n]*|\#[^\n]*|/\*.*?\*/)
    | '(?:[^'\\]|\\.|'')*' | "(?:[^"\\]|\\.|"")*" | `(?:[^`\\]|\\.|``)*`
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*) | .""", re.S | re.X)
_AFTER_FORMAT = re.compile(rb"[ \t\f]*\r?\n?")


def split_insert(text: bytes) -> tuple[bytes, int | None]:
    """(statement, offset of its data in `text`) for an INSERT whose data follows its FORMAT
    clause or its VALUES keyword, as ClickHouse reads an HTTP request; else (text, None).
    A misreading here can only make a statement fail: the statement is checked on its own."""
    tokens = (m for m in _TOKEN.finditer(text) if m.lastgroup != "skip")
    first = next(tokens, None)
    if first is None or first.group().upper() != b"INSERT":
        return text, None
    depth = 0
    for m in tokens:
        token = m.group().upper()
        depth += (token == b"(") - (token == b")")
        if depth or m.lastgroup != "word":
            continue
        if token in (b"SELECT", b"WITH"):
            break
        if token == b"VALUES":
            return text[:m.start()] + b"FORMAT Values", m.end()
        if token == b"FORMAT":
            name = next(tokens, None)
            if name is None or name.lastgroup != "word":
                break
            return text[:name.end()], _AFTER_FORMAT.match(text, name.end()).end()
    return text, None


def check(ast: str, formatted: bytes, user: str, readonly_user: bool, outward: frozenset[str]) -> None:
    """Raise Refused unless `user` may run the statement whose EXPLAIN AST is `ast` (and whose
    formatted text is `formatted`: settings do not show in the AST)."""
    lines = [(len(line) - len(line.lstrip(" ")), line.strip()) for line in ast.splitlines() if line.strip()]
    if not lines:
        raise Refused(62, "SYNTAX_ERROR", "Empty query")
    kind = lines[0][1]
    allowed = READER_STATEMENTS if readonly_user else WRITER_STATEMENTS
    if not kind.startswith(allowed):
        if readonly_user:
            raise Refused(164, "READONLY", f"{user}: Cannot execute query in readonly mode")
        raise _denied(user, f"{kind.split(' (')[0]} is not allowed on the embedded warehouse")
    parents: list[str] = []
    for depth, label in lines:
        del parents[depth:]
        parent = parents[-1] if parents else ""
        word, _, rest = label.partition(" ")
        if word == "Function" and "." not in rest.split(" ")[0]:  # db.name(...) is a parameterised view
            name = rest.split(" ")[0].lower()
            if name in outward or name in DENIED_FUNCTIONS:
                raise _denied(user, f"{rest.split(' ')[0]} reaches outside the warehouse and is not allowed here")
        elif label.startswith("Dictionary definition"):
            raise _denied(user, "dictionaries are not allowed here")
        elif word == "Literal" and parent.startswith("InsertQuery"):
            raise _denied(user, "FROM INFILE is not allowed here; send the data in the request body")
        parents.append(label)
    _check_text(formatted, user)


def _names(text: bytes):
    """The words and `quoted` names of a statement's text outside string literals and
    comments, upper-cased, each with the token after it."""
    tokens = [m for m in _TOKEN.finditer(text) if m.lastgroup != "skip"]
    for i, m in enumerate(tokens):
        token = m.group()
        if m.lastgroup == "word" or token.startswith(b"`"):
            following = tokens[i + 1].group() if i + 1 < len(tokens) else b""
            yield token.strip(b"`").upper(), following


def _check_text(formatted: bytes, user: str) -> None:
    """What the AST does not show alike for every statement kind: INTO OUTFILE (SELECT,
    DESCRIBE, SHOW, EXISTS and EXPLAIN all take it), disk(...) and the file-naming settings;
    words inside string literals are data, not refused."""
    previous = b""
    for name, following in _names(formatted):
        if previous == b"INTO" and name == b"OUTFILE":
            raise _denied(user, "INTO OUTFILE is not allowed here")
        if name == b"DISK" and following == b"(":
            raise _denied(user, "disk( is not allowed here")
        if DENIED_SETTINGS.fullmatch(name.decode("latin-1")):
            raise _denied(user, f"{name.decode('latin-1').lower()} is not allowed here")
        previous = name


def check_setting(user: str, name: str) -> None:
    """A setting given with the request (a URL parameter)."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise Refused(115, "UNKNOWN_SETTING", f"Unknown setting '{name}'")
    if DENIED_SETTINGS.fullmatch(name):
        raise _denied(user, f"the setting {name} is not allowed here")
