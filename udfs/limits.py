"""The limits every call and every person stay within, and the check of JSON values against them.

The collector refuses a call over a limit with a 4xx naming it; identity_merge checks the
same limits on what reaches tracktor.raw by other ways and sends what is over them to the
dead-letter topic. docs/limits.md lists them with the reasons for their values.
"""
from __future__ import annotations

import math

MAX_ID_LENGTH = 256             # characters of a distinct id (id, previous_id, srcid, destid)
MAX_ACTION_LENGTH = 256         # characters of an event name
MAX_CALL_BYTES = 32 * 1024      # one call's raw envelope as JSON: every record made from it fits in a Kafka record (1 MB)
MAX_DEPTH = 20                  # nesting of objects and arrays in data and carts (the data object itself is 1)
MIN_INT, MAX_INT = -2 ** 63, 2 ** 63 - 1   # integers ClickHouse's Int64 and every JSON reader hold exactly
MAX_FUTURE_MS = 3_600_000       # a call's ts may be at most 1 hour past its receive time
MAX_PROPERTIES = 1000           # properties a person may have (deleted ones count until they are set again)
MAX_PROFILE_BYTES = 256 * 1024  # a person's properties as JSON
MAX_MEMBERS = 1000              # distinct ids merged into one person
MAX_STATE_DEPTH = 3 * MAX_DEPTH  # a person's state in a handoff: data and carts inside the job's own structure
MAX_HELD_RECORDS = 10_000     # records a per-person job holds for a person while its merge is handed over
MAX_DEAD_LETTER_RECORD = 10_000  # characters of a rejected record kept on the dead-letter topic


def check_json(value, what: str = "data", max_depth: int = MAX_DEPTH, max_values: int | None = None) -> None:
    """ValueError naming the limit when `value` (parsed JSON) nests deeper than `max_depth`
    or holds a number outside 64-bit integers or finite floats. With `max_values`, for data
    a JSON parser did not make (YAML): also at most that many values, and string keys only."""
    stack, values = [(value, 1)], 1
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
            if max_values is not None and not all(isinstance(k, str) for k in node):
                raise ValueError(f"{what} has a key that is not a string: "
                                 f"{next(k for k in node if not isinstance(k, str))!r}"[:200])
        elif isinstance(node, list):
            children = node
        else:
            _check_scalar(node, what)
            continue
        if depth > max_depth:
            raise ValueError(f"{what} nests deeper than {max_depth} levels")
        if max_values is not None:
            values += len(children)
            if values > max_values:
                raise ValueError(f"{what} holds more than {max_values} values")
        for child in children:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
            else:
                _check_scalar(child, what)


def _check_scalar(node, what: str) -> None:
    if isinstance(node, bool) or node is None or isinstance(node, str):
        return
    if isinstance(node, int):
        if not MIN_INT <= node <= MAX_INT:
            raise ValueError(f"{what} holds the integer {str(node)[:30]}…, outside 64-bit integers "
                             f"({MIN_INT} to {MAX_INT})")
    elif isinstance(node, float):
        if not math.isfinite(node):
            raise ValueError(f"{what} holds {node}, which JSON cannot carry")
    else:
        raise ValueError(f"{what} holds a {type(node).__name__}, which is not JSON")
