"""The value types every config model uses: strict scalars (YAML's `yes` is not true, "5" is
not 5) and durations written like `30m`."""
from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, StrictStr

_DURATION = re.compile(r"^(\d+)\s*(ms|s|m|h|d)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> float:
    """Seconds from a number of seconds or a string like '90s', '30m', '2h', '7d'."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 30m, got {value!r}")
    if isinstance(value, (int, float)) and value >= 0:
        return float(value)
    m = _DURATION.match(str(value).strip())
    if not m:
        raise ValueError(f"expected a duration like 30m, got {value!r}")
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2)]


Duration = Annotated[float, BeforeValidator(parse_duration)]  # seconds
Bool = StrictBool
Int = StrictInt
Text = Annotated[StrictStr, Field(min_length=1)]
PositiveInt = Annotated[StrictInt, Field(ge=1)]
Port = Annotated[StrictInt, Field(ge=0, le=65535)]
def _identifier(value: Any) -> Any:
    if isinstance(value, str) and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ValueError(f"expected an identifier (letters, digits, '_'), got {value!r}")
    return value


Identifier = Annotated[StrictStr, BeforeValidator(_identifier)]


class Model(BaseModel):
    """Frozen, and unknown keys are errors (a typo must not be ignored silently)."""
    model_config = ConfigDict(extra="forbid", frozen=True)
