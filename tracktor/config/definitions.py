"""Funnel and metric definitions: in tracktor.yaml under each app, or ad hoc (command line,
HTTP API), validated the same way. tracktor/analytics answers them."""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BeforeValidator, Field, model_validator

from tracktor.config.types import Bool, Duration, Model, Text

# Property criteria operators (the SQL function tracktor_test in sql/migrations/0007).
CRITERIA_OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "set", "not_set")
MAX_FUNNEL_STEPS = 32  # windowFunnel's limit: the funnel views have one condition per possible step


class Criterion(Model):
    """`property op value`, e.g. plan eq "premium"; `value` is any JSON value (None for set/not_set)."""
    property: Text
    op: Literal[CRITERIA_OPS]
    value: Any = None

    @model_validator(mode="after")
    def _value_fits_op(self):
        if self.op in ("set", "not_set"):
            if self.value is not None:
                raise ValueError(f"{self.op!r} takes no value")
        elif self.value is None:
            raise ValueError(f"{self.op!r} needs a value (use not_set for a missing property)")
        elif self.op in ("gt", "gte", "lt", "lte") and (isinstance(self.value, bool)
                                                         or not isinstance(self.value, (int, float))):
            raise ValueError(f"{self.op!r} compares numbers, got {self.value!r}")
        return self


Criteria = tuple[Criterion, ...]


def _step(node: Any) -> Any:
    return {"event": node} if isinstance(node, str) else node


class Step(Model):
    """A funnel step: an event, optionally only where its data meets criteria."""
    event: Text
    where: Criteria = ()


class Funnel(Model):
    """Ordered steps (event names, or {event, where: criteria on the event's data}), an
    optional conversion window, and optional criteria on the person's current properties."""
    name: Text
    steps: Annotated[tuple[Annotated[Step, BeforeValidator(_step)], ...],
                     Field(min_length=2, max_length=MAX_FUNNEL_STEPS)]
    window: Duration | None = None    # None: the whole date range
    people: Criteria = ()

    @classmethod
    def of(cls, name: str, events, window: float | None = None, step_filters=(), people=()) -> "Funnel":
        """A funnel built in code: event names, and per step the criteria on its data."""
        filters = list(step_filters) or [()] * len(events)
        return cls(name=name, steps=[Step(event=e, where=w) for e, w in zip(events, filters)], window=window,
                   people=people)

    @property
    def events(self) -> tuple[str, ...]:
        return tuple(s.event for s in self.steps)

    @property
    def window_seconds(self) -> float | None:
        return self.window

    @property
    def step_filters(self) -> tuple[Criteria, ...]:
        """Per step, the criteria on its event's data; () when no step has any."""
        filters = tuple(s.where for s in self.steps)
        return filters if any(filters) else ()

    @property
    def people_filter(self) -> Criteria:
        return self.people


class _Metric(Model):
    name: Text

    @property
    def params(self) -> dict:
        """The metric's own settings (everything but its name and type), as JSON-able values."""
        return self.model_dump(exclude={"name", "type"}, exclude_none=True)


class EventMetric(_Metric):
    type: Literal["people_did_event", "times_event_happened", "avg_times_per_person"]
    event: Text


class ConversionMetric(_Metric):
    type: Literal["conversion_rate"]
    event_a: Text
    event_b: Text
    repeatable: Bool = False


class TimeBetweenMetric(_Metric):
    type: Literal["avg_time_between"]
    event_a: Text
    event_b: Text


class PropertyTotalMetric(_Metric):
    type: Literal["total_property_value"]
    property: Text
    criteria: Criteria = ()


class PropertyAverageMetric(_Metric):
    """The total of `property` divided by all people, by people who did `event`
    (divide_by: event_people), or by the times it was set."""
    type: Literal["average_property_value"]
    property: Text
    divide_by: Literal["people", "event_people", "sets"] = "people"
    event: Text | None = None

    @model_validator(mode="after")
    def _event_iff_event_people(self):
        if self.divide_by == "event_people" and self.event is None:
            raise ValueError("divide_by: event_people needs an 'event'")
        if self.divide_by != "event_people" and self.event is not None:
            raise ValueError("only divide_by: event_people takes an 'event'")
        return self


Metric = Annotated[Union[EventMetric, ConversionMetric, TimeBetweenMetric, PropertyTotalMetric,
                         PropertyAverageMetric], Field(discriminator="type")]
METRIC_TYPES = ("people_did_event", "times_event_happened", "avg_times_per_person", "conversion_rate",
                "avg_time_between", "total_property_value", "average_property_value")
