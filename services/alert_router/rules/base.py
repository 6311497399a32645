"""What every rule type provides, and the registry that turns rule modules into config and evaluators.

A rule type is one module in this package: a config model (a `RuleConfigBase` subclass whose `type` is a
`Literal` with that literal as default) and an evaluator, tied together by `register_rule`. The zone
config validates `rules:` entries against the union of all registered models, discriminated by `type`,
so an unknown type or a bad parameter is reported like any other pydantic error, with its path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Generic, Protocol, TypeVar, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler
from pydantic_core import CoreSchema

from ..geometry import point_in_polygon
from ..model import Severity

if TYPE_CHECKING:
    from ..config import ZoneConfig
    from ..tracking import Track

PERSON_CLASSES: tuple[str, ...] = ("person",)


class RuleConfigBase(BaseModel):
    """Fields every rule has. Subclasses add `type: Literal["<name>"] = "<name>"` and their parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Severity of this rule type's alerts unless the operator's severity policy says otherwise.
    default_severity: ClassVar[Severity] = Severity.MEDIUM

    # The rule type's name; each subclass narrows it to `Literal["<name>"] = "<name>"`.
    type: str
    # Unique within its zone; defaults to the rule type. Part of the alert id, so keep it stable.
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    # Overrides the severity policy for this rule when set.
    severity: Severity | None = None
    # Object classes the rule looks at (narrowed further by the zone's `classes`).
    classes: list[str] = Field(default_factory=lambda: list(PERSON_CLASSES), min_length=1)

    @property
    def key(self) -> str:
        return self.name or self.type

    @property
    def incident_per_track(self) -> bool:
        """Whether each firing track gets its own incident (and alert) instead of one per zone and rule."""
        return False


@dataclass(slots=True)
class RuleFrame:
    """One frame as one rule of one zone sees it."""

    zone: ZoneConfig
    now_ms: int
    # Frame width / height: converts normalised x distances into units of the frame height.
    aspect: float
    # Confirmed tracks seen on this frame whose class the rule (and zone) watches.
    watched: list[Track]
    # Every confirmed track seen on this frame (e.g. the people near an abandoned bag).
    seen: list[Track]
    # This rule's own timers, kept across frames and snapshots: JSON types only, str keys.
    state: dict[str, Any]


@dataclass(slots=True)
class Firing:
    """A rule holds on this frame because of `tracks`; `description` is what the operator reads."""

    tracks: list[Track]
    description: str
    # What the operator reads per track (same order as `tracks`), for rules with one incident per track.
    track_descriptions: list[str] | None = None


ConfigT = TypeVar("ConfigT", bound=RuleConfigBase)
ConfigT_contra = TypeVar("ConfigT_contra", bound=RuleConfigBase, contravariant=True)


class Evaluate(Protocol[ConfigT_contra]):
    def __call__(self, rule: ConfigT_contra, frame: RuleFrame, /) -> Firing | None: ...


# Called with a rule's state and the ids (as str) of every track the tracker still holds, so per-track
# timers of tracks that are gone can be dropped (or kept aside, as the abandoned-object rule does).
ForgetTracks = Callable[[dict[str, Any], set[str]], None]


@dataclass(frozen=True, slots=True)
class RuleType(Generic[ConfigT]):
    name: str
    config: type[ConfigT]
    evaluate: Evaluate[ConfigT]
    forget_tracks: ForgetTracks | None = None


_REGISTRY: dict[str, RuleType[Any]] = {}
_listeners: list[Callable[[], None]] = []


def rule_type_of(config: type[RuleConfigBase]) -> str:
    """The `type` literal of a rule config model; TypeError with the fix when the model lacks one."""
    type_field = config.model_fields.get("type")
    literals = get_args(type_field.annotation) if type_field is not None else ()
    if type_field is None or len(literals) != 1 or type_field.default != literals[0]:
        raise TypeError(f"rule config {config.__name__} needs a field `type: Literal['<rule name>'] = '<rule name>'`")
    return str(literals[0])


def register_rule(
    config: type[ConfigT], evaluate: Evaluate[ConfigT], forget_tracks: ForgetTracks | None = None
) -> RuleType[ConfigT]:
    """Make a rule type known to zone validation and to the rule engine (call once, at module import)."""
    name = rule_type_of(config)
    existing = _REGISTRY.get(name)
    if existing is not None and existing.config is not config:
        raise ValueError(
            f"rule type {name!r} is already registered by {existing.config.__module__}.{existing.config.__name__}"
        )
    entry = RuleType(name, config, evaluate, forget_tracks)
    _REGISTRY[name] = entry
    if existing is None:
        for listener in _listeners:
            listener()
    return entry


def on_rule_registered(listener: Callable[[], None]) -> None:
    """`listener()` runs after each new rule type: models that embed rule configs rebuild their schema."""
    _listeners.append(listener)


def registered_rules() -> dict[str, RuleType[Any]]:
    return dict(_REGISTRY)


def rule_type(name: str) -> RuleType[Any]:
    return _REGISTRY[name]


class _RegisteredRuleUnion:
    """Schema of "one rule config of any registered type": a union of their models tagged by `type`."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        models = tuple(entry.config for entry in _REGISTRY.values())
        if not models:
            raise TypeError("no rule types are registered; import services.alert_router.rules first")
        if len(models) == 1:
            return handler.generate_schema(models[0])
        return handler.generate_schema(Annotated[Union[models], Field(discriminator="type")])  # noqa: UP007


# Annotation for a rule config field: typed as the base class, validated as the registered union.
AnyRuleConfig = Annotated[RuleConfigBase, _RegisteredRuleUnion()]


def track_label(track: Track) -> str:
    return f"{track.class_name} #{track.track_id}"


def in_zone(track: Track, zone: ZoneConfig) -> bool:
    """Whether the track's foot point (where it stands) is inside the zone polygon."""
    return point_in_polygon(track.foot, zone.polygon)


def forget_gone_tracks(table_key: str) -> ForgetTracks:
    """A `forget_tracks` for rules that keep per-track timers in `state[table_key]`."""

    def forget(state: dict[str, Any], alive: set[str]) -> None:
        table = state.get(table_key)
        if table:
            for track_id in [t for t in table if t not in alive]:
                del table[track_id]

    return forget
