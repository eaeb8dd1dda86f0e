"""Segment definitions as data (tracktor.yaml `apps[].segments`, or the control topic), and
what one condition says about a person.

    segments:
      item1:        {where: {event: Item1}}                                  # has performed Item1
      adults:       {where: {property: age, op: gte, value: 25}}
      big_cities:   {where: {any: [{property: city, op: eq, value: New York},
                                   {property: city, op: eq, value: London}]}}
      basic:        {where: {property: plan, op: eq, value: Basic}}
      tire_buyers:  {where: {event: purchase, where: [{property: category, op: eq, value: tires}], within: 60d}}
      regulars:     {where: {event: Movie watch, at_least: 20}}
      lapsed:       {where: {all: [{event: Site visit}, {event: Site visit, within: 30d, performed: false}]}}
      acme:         {where: {company: Acme Inc}}            # or {company: {id: c-42}}
      january:      {where: {event: Upgrade, between: [2026-01-01, 2026-01-31]}}

Conditions nest with `all` / `any`. Event windows are whole UTC days: `within: 60d` is the
last 60 days including today, `between` two dates inclusive. Numbers compare as numbers.
"""
from __future__ import annotations

import hashlib
from functools import cached_property
from datetime import date
from typing import Annotated, Any, Literal, Union

import orjson
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, StrictBool, StrictInt, StrictStr, Tag,
                      model_validator)

from udfs.limits import check_json

DAY_MS = 86_400_000
PROPERTY_OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "contains", "set", "not_set", "in")
MAX_CONDITIONS = 64  # conditions in one segment
MAX_DEFINITION_DEPTH = 32  # JSON levels of one definition (each any / all level takes two)
MAX_WINDOW_DAYS = 400


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Text = Annotated[StrictStr, Field(min_length=1, max_length=256)]


def _days(value):
    """A window like 60d (days; 2w, 1y also) or a number of days."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value[:-1].isdigit() and value[-1:] in "dwy":
        return int(value[:-1]) * {"d": 1, "w": 7, "y": 365}[value[-1]]
    raise ValueError(f"expected a number of days like 60d, got {value!r}")


class DataCriterion(_Model):
    """A condition on an event's data: `property op value` (the property ops)."""
    property: Text
    op: Literal[PROPERTY_OPS]
    value: Any = None


class PropertyCondition(_Model):
    property: Text
    op: Literal[PROPERTY_OPS]
    value: Any = None

    @model_validator(mode="after")
    def _value_fits(self):
        _check_value(self.op, self.value)
        return self

    def holds(self, props: dict) -> bool:
        return compare(props.get(self.property), self.op, self.value, self.property in props)


class EventCondition(_Model):
    event: Text
    performed: StrictBool = True          # false: has not performed it (in the period)
    at_least: Annotated[StrictInt, Field(ge=1)] | None = None
    at_most: Annotated[StrictInt, Field(ge=0)] | None = None
    where: tuple[DataCriterion, ...] = ()  # on the event's data
    within: Annotated[int, BeforeValidator(_days), Field(ge=1, le=MAX_WINDOW_DAYS)] | None = None
    between: tuple[date, date] | None = None

    @model_validator(mode="after")
    def _consistent(self):
        for c in self.where:
            _check_value(c.op, c.value)
        if self.within is not None and self.between is not None:
            raise ValueError("give within or between, not both")
        if self.between and self.between[1] < self.between[0]:
            raise ValueError("between: the period ends before it starts")
        if not self.performed and (self.at_least is not None or self.at_most is not None):
            raise ValueError("performed: false takes no at_least / at_most")
        if self.at_least is not None and self.at_most is not None and self.at_most < self.at_least:
            raise ValueError("at_most is below at_least")
        return self

    @cached_property
    def counter(self) -> str:
        """The name of the per-person count this condition reads: the event, and a hash of
        its data filter when it has one (worked out once: it is read on every event)."""
        if not self.where:
            return self.event
        digest = hashlib.sha1(orjson.dumps([c.model_dump() for c in self.where], option=orjson.OPT_SORT_KEYS)).hexdigest()
        return f"{self.event}\x1f{digest[:16]}"

    def matches(self, data: dict) -> bool:
        """The event's data meets the filter."""
        return all(compare(data.get(c.property), c.op, c.value, c.property in data) for c in self.where)

    def days(self, today: int) -> tuple[int, int] | None:
        """The days counted (inclusive), or None for ever."""
        if self.within is not None:
            return today - self.within + 1, today
        if self.between is not None:
            return self.between[0].toordinal() - _EPOCH, self.between[1].toordinal() - _EPOCH
        return None

    def holds(self, count: int) -> bool:
        if not self.performed:
            return count == 0
        if count < (self.at_least or 1):
            return False
        return self.at_most is None or count <= self.at_most


class CompanyCondition(_Model):
    """The person's `company` property: a name, or an object with an id (and/or a name)."""
    company: Union[Text, dict[Literal["id", "name"], Text]]

    @model_validator(mode="after")
    def _something(self):
        if isinstance(self.company, dict) and not self.company:
            raise ValueError("company: an object needs an id or a name (an empty one would match any company)")
        return self

    def holds(self, props: dict) -> bool:
        have = props.get("company")
        want = self.company if isinstance(self.company, dict) else {"name": self.company}
        if isinstance(have, str):
            return want.get("name") == have and "id" not in want
        if isinstance(have, dict):
            return all(have.get(k) == v for k, v in want.items())
        return False


class AllOf(_Model):
    all: tuple["Condition", ...] = Field(min_length=1)


class AnyOf(_Model):
    any: tuple["Condition", ...] = Field(min_length=1)


def _kind(node):
    if isinstance(node, dict):
        for key in ("all", "any", "event", "property", "company"):
            if key in node:
                return key
    return None


Condition = Annotated[Union[
    Annotated[AllOf, Tag("all")], Annotated[AnyOf, Tag("any")], Annotated[EventCondition, Tag("event")],
    Annotated[PropertyCondition, Tag("property")], Annotated[CompanyCondition, Tag("company")]],
    Discriminator(_kind, custom_error_type="condition",
                  custom_error_message="a condition needs one of all, any, event, property, company")]


class Segment(_Model):
    name: Text
    where: "Condition"

    @model_validator(mode="after")
    def _not_too_big(self):
        if sum(1 for _ in conditions(self.where)) > MAX_CONDITIONS:
            raise ValueError(f"more than {MAX_CONDITIONS} conditions")
        return self


_EPOCH = date(1970, 1, 1).toordinal()
AllOf.model_rebuild()
AnyOf.model_rebuild()
Segment.model_rebuild()


def conditions(cond):
    """Every leaf condition of a condition tree."""
    if isinstance(cond, (AllOf, AnyOf)):
        for c in (cond.all if isinstance(cond, AllOf) else cond.any):
            yield from conditions(c)
    else:
        yield cond


def _check_value(op: str, value) -> None:
    if op in ("set", "not_set"):
        if value is not None:
            raise ValueError(f"{op!r} takes no value")
    elif value is None:
        raise ValueError(f"{op!r} needs a value")
    elif op in ("gt", "gte", "lt", "lte") and not _number(value):
        raise ValueError(f"{op!r} compares numbers, got {value!r}")
    elif op == "in" and not isinstance(value, list):
        raise ValueError(f"'in' takes a list, got {value!r}")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b  # true is no 1 (Python's True == 1)
    return a == b if not (_number(a) and _number(b)) else float(a) == float(b)


def compare(have, op: str, want, present: bool) -> bool:
    """`have op want` for a property (or an event's data) value; `present` says whether the
    key is there at all (a deleted property is not)."""
    if op == "set":
        return present and have is not None
    if op == "not_set":
        return not present or have is None
    if not present or have is None:
        return op == "ne"
    if op == "eq":
        return _same(have, want)
    if op == "ne":
        return not _same(have, want)
    if op == "in":
        return any(_same(have, w) for w in want)
    if op == "contains":
        if isinstance(have, str):
            return isinstance(want, str) and want in have
        if isinstance(have, list):
            return any(_same(h, want) for h in have)
        return False
    if not _number(have):
        return False
    return {"gt": have > want, "gte": have >= want, "lt": have < want, "lte": have <= want}[op]


_TAGS = ("all", "any", "event", "property", "company")


def _path(loc: tuple) -> str:
    """where.any[1].within from pydantic's location (the union tags it adds left out)."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _TAGS and i + 1 < len(loc) and not isinstance(loc[i + 1], int) and loc[i + 1] != part:
            continue  # the tag of the condition whose field comes next
        elif part in _TAGS and i + 1 < len(loc) and loc[i + 1] == part:
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_segment(name: str, node) -> Segment:
    """A definition, validated; ValueError naming the segment and the condition at fault."""
    from pydantic import ValidationError

    check_json(node, f"segment {name!r}", MAX_DEFINITION_DEPTH)  # depth, 64-bit integers, no NaN: before pydantic
    try:
        return Segment.model_validate({**node, "name": name} if isinstance(node, dict) else node)
    except ValidationError as e:
        raise invalid(f"segment {name!r}", e) from None


def invalid(what: str, error) -> ValueError:
    """A pydantic ValidationError as one line: what, then each field at fault (five at most)."""
    problems = [f"{_path(err['loc']) or 'definition'}: {err['msg'].removeprefix('Value error, ')}"
                for err in error.errors()]
    return ValueError(f"{what}: " + "; ".join(problems[:5])
                      + (f"; and {len(problems) - 5} more" if len(problems) > 5 else ""))
