"""Tables derived from the Meta unions: each type's name is written once, as its `Literal`.

A union of models is the one list of what a version types; the names a model answers to
are read off its `Literal` tag field, and the lookup tables and the pydantic tagged union
with an Unknown fallback are built from that list at import time, never written by hand.
"""

from __future__ import annotations

from functools import reduce
from operator import or_
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

from pydantic import BaseModel, Discriminator, Tag

M = TypeVar("M", bound=BaseModel)


def members(union: Any, base: type[M]) -> tuple[type[M], ...]:
    """The models of a union (`A | B | ...`) in the order it names them, each a `base`."""
    found = get_args(union) or (union,)
    if not all(isinstance(model, type) and issubclass(model, base) for model in found):
        raise TypeError(f"{union!r} is not a union of {base.__name__} models")
    return found


def names_of(model: type[BaseModel], tag_field: str) -> tuple[str, ...]:
    """The values of a model's `Literal` tag field, first the canonical one."""
    annotation = model.model_fields[tag_field].annotation
    values = get_args(annotation) if get_origin(annotation) is Literal else ()
    if not values or not all(isinstance(value, str) for value in values):
        raise TypeError(f"{model.__name__}.{tag_field} must be a Literal of strings")
    return values


def by_name(models: tuple[type[M], ...], tag_field: str) -> dict[str, type[M]]:
    """Every name a model answers to -> that model; a name claimed twice is an error."""
    table: dict[str, type[M]] = {}
    for model in models:
        for name in names_of(model, tag_field):
            if name in table:
                raise TypeError(
                    f"{name!r} is claimed by {table[name].__name__} and {model.__name__}"
                )
            table[name] = model
    return table


def with_fallback(known: Any, tag_field: str, unknown: type[BaseModel], unknown_tag: str) -> Any:
    """The pydantic tagged union of `known | unknown`, keyed on `tag_field`.

    Each known model is tagged with its canonical name (its first `Literal` value); an
    alias (a further value) is tagged like its canonical name, and anything else (an
    unknown or missing name, a non-string) goes to the `unknown` model, which decides
    what it accepts. The tags are the ones a hand-written `Annotated[Model, Tag(...)]`
    union would carry, so validation error locations (published in `unsupported` events)
    and the JSON Schema do not depend on the union being built.
    """
    models = members(known, BaseModel)
    tags = {
        name: names_of(model, tag_field)[0] for name, model in by_name(models, tag_field).items()
    }
    if unknown_tag in tags:
        raise TypeError(f"the fallback tag {unknown_tag!r} is a known name")

    def tag_of(value: Any) -> str:
        kind = value.get(tag_field) if isinstance(value, dict) else getattr(value, tag_field, None)
        return tags.get(kind, unknown_tag) if isinstance(kind, str) else unknown_tag

    choices = [Annotated[model, Tag(names_of(model, tag_field)[0])] for model in models]
    choices.append(Annotated[unknown, Tag(unknown_tag)])
    return Annotated[reduce(or_, choices), Discriminator(tag_of)]
