"""The one place where domain events become JSON and back.

One cattrs converter, the registry of event type names (`"job.phase_started"`, never module
paths), and the upcasters that lift a stored payload from an older `schema_version` to the
current class. Stored events are never rewritten: old payloads are upcast every time they are
read.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import cattrs

from helix.domain.project.events import EnvValue, SealedSecret
from helix.eventstore.records import EncodedEvent, RecordedEvent

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]
# What every reader of a sealed secret's JSON sees beside the sealed text: never a value.
REDACTED = {"redacted": True}


def _sealed_json(secret: SealedSecret) -> dict[str, Any]:
    return {"sealed": secret.sealed, **REDACTED}


def _env_value(value: Any, _: Any) -> EnvValue:
    if isinstance(value, str | SealedSecret):
        return value
    if isinstance(value, dict) and isinstance(value.get("sealed"), str):
        return SealedSecret(sealed=value["sealed"])
    raise ValueError("an environment value is a string or a sealed secret")


def make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=False)
    converter.register_unstructure_hook(uuid.UUID, str)
    converter.register_structure_hook(
        uuid.UUID, lambda v, _: v if isinstance(v, uuid.UUID) else uuid.UUID(v)
    )
    converter.register_unstructure_hook(datetime, lambda v: v.isoformat())
    converter.register_structure_hook(
        datetime, lambda v, _: v if isinstance(v, datetime) else datetime.fromisoformat(v)
    )
    converter.register_unstructure_hook(SealedSecret, _sealed_json)
    converter.register_structure_hook_func(lambda t: t == EnvValue, _env_value)
    return converter


converter = make_converter()


class UnknownEventType(LookupError):
    pass


class EventRegistry:
    """Maps event type names to classes and schema versions, and holds the upcasters."""

    def __init__(self, conv: cattrs.Converter = converter) -> None:
        self._conv = conv
        self._classes: dict[str, type] = {}
        self._names: dict[type, str] = {}
        self._versions: dict[str, int] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(self, name: str, cls: type, *, schema_version: int = 1) -> None:
        if name in self._classes and self._classes[name] is not cls:
            raise ValueError(f"event type {name!r} is already registered")
        self._classes[name] = cls
        self._names[cls] = name
        self._versions[name] = schema_version

    def register_all(self, events: dict[str, type]) -> None:
        for name, cls in events.items():
            self.register(name, cls)

    def upcaster(self, name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorates a function lifting `name` payloads from `from_version` to the next one."""

        def decorate(fn: Upcaster) -> Upcaster:
            self._upcasters[(name, from_version)] = fn
            return fn

        return decorate

    def name_of(self, event: object) -> str:
        try:
            return self._names[type(event)]
        except KeyError:
            raise UnknownEventType(f"{type(event).__name__} is not a registered event") from None

    def class_of(self, name: str) -> type:
        try:
            return self._classes[name]
        except KeyError:
            raise UnknownEventType(f"no event class is registered for {name!r}") from None

    def version_of(self, name: str) -> int:
        """The current schema version of `name`, the one `upcast` lifts payloads to."""
        return self._versions[name]

    def types(self) -> Iterable[str]:
        return self._classes.keys()

    def encode(self, event: object) -> EncodedEvent:
        if isinstance(event, EncodedEvent):
            return event
        name = self.name_of(event)
        data = self._conv.unstructure(event)
        return EncodedEvent(type=name, schema_version=self._versions[name], data=data)

    def upcast(self, name: str, schema_version: int, data: Payload) -> Payload:
        current = self._versions[name]
        while schema_version < current:
            step = self._upcasters.get((name, schema_version))
            if step is None:
                raise UnknownEventType(f"no upcaster for {name} v{schema_version}")
            data = step(dict(data))
            schema_version += 1
        return data

    def decode(self, recorded: RecordedEvent) -> Any:
        cls = self.class_of(recorded.type)
        data = self.upcast(recorded.type, recorded.schema_version, recorded.data)
        return self._conv.structure(data, cls)

    def to_json(self, value: Any) -> Any:
        return self._conv.unstructure(value)


def default_registry() -> EventRegistry:
    """The registry of every event type Helix writes."""
    from helix.domain import EVENTS

    registry = EventRegistry()
    registry.register_all(EVENTS)
    _register_upcasters(registry)
    return registry


def _register_upcasters(registry: EventRegistry) -> None:
    """Every event type past its first schema version, with the steps that lift old payloads."""
    from helix.domain.job.events import JobPhaseOutput

    # v2 names the attempt that wrote the lines. A v1 batch was written before attempts were
    # told apart: it is read as the first attempt's.
    registry.register("job.phase_output", JobPhaseOutput, schema_version=2)
    registry.upcaster("job.phase_output", 1)(lambda data: {**data, "attempt": 1})
