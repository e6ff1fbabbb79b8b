"""The lookup tables derived from the Meta unions cover every member, and nothing else.

Each Meta type is declared once (its `Literal`, in one module's union); these tests are
what stops a union member from lacking a category, a handler or a tag.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, get_args, get_origin

import pytest
from pydantic import BaseModel, Tag, ValidationError

from actors.normalize_field import category_of, field_time
from actors.normalize_message import INTERACTIVE_DATA, MESSAGE_DATA
from models.event_message import MEDIA_TYPES
from models.meta import fields_account, fields_activity, fields_template
from models.meta.common import FieldValue
from models.meta.content import EditedMessage, Media
from models.meta.fields import (
    FIELD_CATEGORIES,
    FIELD_MODELS,
    UNTYPED_FIELDS,
    FieldEventData,
    KnownField,
)
from models.meta.interactive import (
    INTERACTIVE_TYPES,
    Interactive,
    KnownInteractive,
    UnknownInteractive,
)
from models.meta.messages import (
    MESSAGE_MODELS,
    MESSAGE_TYPES,
    InboundMessage,
    KnownMessage,
    UnknownMessage,
    UnsupportedMessage,
    parse_message,
)
from models.meta.unions import by_name, members, names_of, with_fallback

ROUTING_TOKEN = re.compile(r"^[a-z0-9_]+$")
FIELD_UNIONS = (
    fields_account.AccountField,
    fields_template.TemplateField,
    fields_activity.ActivityField,
)


def _tagged_members(union: Any) -> list[tuple[type[BaseModel], str]]:
    """(model, tag) of each member of a built `Annotated[A | B, Discriminator]` union."""
    inner, *_ = get_args(union)
    found = []
    for choice in get_args(inner):
        model, *metadata = get_args(choice)
        (tag,) = [m.tag for m in metadata if isinstance(m, Tag)]
        found.append((model, tag))
    return found


def test_every_field_model_of_every_module_union_is_in_the_field_tables() -> None:
    """FIELD_MODELS holds exactly the published union's members, each under its `kind`."""
    published = get_args(get_args(FieldEventData)[0])
    per_module = [model for union in FIELD_UNIONS for model in get_args(union)]
    assert list(published) == per_module == list(get_args(KnownField))
    assert list(FIELD_MODELS.values()) == per_module
    for field, model in FIELD_MODELS.items():
        assert names_of(model, "kind") == (field,)
        assert model.model_fields["kind"].default == field  # Meta's value carries no `kind`


@pytest.mark.parametrize("model", get_args(KnownField), ids=lambda m: m.__name__)
def test_every_field_model_declares_its_category_and_time(model: type[FieldValue]) -> None:
    """A field model names its category (a routing token) and, if any, a timed list."""
    field = names_of(model, "kind")[0]
    assert isinstance(getattr(model, "category", None), str)
    assert ROUTING_TOKEN.match(model.category)
    assert FIELD_CATEGORIES[field] == category_of(field) == model.category
    if model.timed_list is not None:
        annotation = model.model_fields[model.timed_list].annotation
        assert get_origin(annotation) is list
        (item,) = get_args(annotation)
        if get_origin(item) is Annotated:  # a tagged union (the echoed messages)
            models = [m for m, _ in _tagged_members(item)]
        else:
            models = list(members(item, BaseModel))
        assert all("timestamp" in m.model_fields for m in models)


def test_untyped_fields_have_a_category_and_are_not_typed_too() -> None:
    """Fields kept as `unknown_field` still route under their category; none is typed."""
    modules = (
        fields_account.UNTYPED_ACCOUNT_FIELDS,
        fields_template.UNTYPED_TEMPLATE_FIELDS,
        fields_activity.UNTYPED_ACTIVITY_FIELDS,
    )
    assert sum(len(m) for m in modules) == len(UNTYPED_FIELDS)  # no name in two modules
    assert not UNTYPED_FIELDS.keys() & FIELD_MODELS.keys()
    assert FIELD_CATEGORIES.keys() == UNTYPED_FIELDS.keys() | FIELD_MODELS.keys()
    assert all(ROUTING_TOKEN.match(category) for category in FIELD_CATEGORIES.values())
    assert category_of("account_settings_update") == "account"
    assert category_of("not_a_field_meta_sends") == "other"


def test_the_time_of_a_field_is_its_timed_lists_first_timestamp() -> None:
    """`field_time` reads the model's own `timed_list`; a field without one has no time."""
    calls = FIELD_MODELS["calls"].model_validate(
        {"calls": [{"id": "c1", "event": "connect", "timestamp": "1700000000"}]}
    )
    assert field_time(calls) == datetime.fromtimestamp(1700000000, tz=UTC)
    flows = FIELD_MODELS["flows"].model_validate({"event": "FLOW_STATUS_CHANGE"})
    assert field_time(flows) is None


def test_every_message_type_maps_to_its_model_aliases_included() -> None:
    """MESSAGE_MODELS holds every `type` Literal of the union, e.g. Meta's older "unknown"."""
    models = get_args(KnownMessage)
    assert set(MESSAGE_MODELS.values()) == set(models)
    assert {name for m in models for name in names_of(m, "type")} == MESSAGE_TYPES
    assert MESSAGE_MODELS["unknown"] is MESSAGE_MODELS["unsupported"] is UnsupportedMessage


@pytest.mark.parametrize(
    ("union", "known", "fallback", "fallback_tag"),
    [
        (InboundMessage, KnownMessage, UnknownMessage, "~unknown"),
        (Interactive, KnownInteractive, UnknownInteractive, "unknown"),
    ],
    ids=["message", "interactive"],
)
def test_the_built_union_tags_every_member_by_its_type(
    union: Any, known: Any, fallback: type[BaseModel], fallback_tag: str
) -> None:
    """The pydantic union is the plain union's members, in order, tagged by their canonical
    `type`, then the fallback (so validation error locations stay `<type>.<field>`)."""
    expected = [(m, names_of(m, "type")[0]) for m in get_args(known)] + [(fallback, fallback_tag)]
    assert _tagged_members(union) == expected


def test_an_unknown_or_malformed_type_falls_back_and_an_alias_takes_its_canonical_tag() -> None:
    """Unknown and missing `type`s keep the raw item, a non-string one is refused (and so
    published as unsupported); Meta's older "unknown" is its `unsupported`."""
    base = {"id": "wamid.X", "from": "16505551234", "timestamp": "1700000000"}
    for kind in ("no_such_type", "~unknown", "", None):
        assert isinstance(parse_message({**base, "type": kind}), UnknownMessage)
    for bad in (3, ["text"]):
        with pytest.raises(ValidationError, match=r"~unknown\.type"):
            parse_message({**base, "type": bad})
    assert isinstance(parse_message({**base, "type": "unknown"}), UnsupportedMessage)
    assert {names_of(m, "type")[0] for m in get_args(KnownInteractive)} == INTERACTIVE_TYPES


def test_the_message_handler_tables_cover_every_union_member_and_nothing_else() -> None:
    """A model added to a union without its row in the normalizer's table fails here."""
    assert list(MESSAGE_DATA) == [*get_args(KnownMessage), UnknownMessage]
    assert list(INTERACTIVE_DATA) == [*get_args(KnownInteractive), UnknownInteractive]


def test_every_media_type_is_a_message_type_carrying_media_under_its_name() -> None:
    """The media types of the schema are message types, and an edit can carry each."""
    for kind in MEDIA_TYPES:
        model = MESSAGE_MODELS[kind]
        assert model.model_fields[kind].annotation is Media
        assert kind in EditedMessage.model_fields


class _FakeA(FieldValue):
    kind: Literal["fake_a"] = "fake_a"
    category: ClassVar[str] = "fake"


class _FakeB(FieldValue):
    kind: Literal["fake_b", "fake_a"] = "fake_b"
    category: ClassVar[str] = "fake"


class _NoLiteral(FieldValue):
    category: ClassVar[str] = "fake"


def test_a_name_claimed_twice_or_a_tag_that_is_not_a_literal_fails_at_import() -> None:
    """The derivation refuses what a hand-written table would silently get wrong."""
    assert by_name(members(_FakeA, FieldValue), "kind") == {"fake_a": _FakeA}
    with pytest.raises(TypeError, match="claimed by"):
        by_name(members(_FakeA | _FakeB, FieldValue), "kind")
    with pytest.raises(TypeError, match="Literal"):
        names_of(_NoLiteral, "kind")
    with pytest.raises(TypeError, match="union of"):
        members(int | _FakeA, FieldValue)
    with pytest.raises(TypeError, match="fallback tag"):
        with_fallback(_FakeA, "kind", _NoLiteral, "fake_a")
