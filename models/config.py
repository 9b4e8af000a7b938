"""One validation mechanism for every job setting: pydantic models whose fields carry their
constraints, and one error shape, ConfigError(message, "config.<key>").

A setting is declared once, on one line, with its constraint:

    n_way: int = Field(5, ge=2, le=100)  # classes per task

and the message of a refused value is written from that declaration ("n_way must be between
2 and 100, got 1"), so a limit lives in one place. Types are strict: a bool is not an int,
a string is not a number; floats must be finite float32 values (learning rates and the like
end up in float32 tensors). Checks that involve several fields are model validators that
raise ConfigError naming the key to change.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal

import annotated_types
import pydantic
from pydantic import AfterValidator, BaseModel, ConfigDict
from pydantic.fields import FieldInfo

FLOAT32_MAX = 3.4028234663852886e38  # the largest finite float32
PREFIX = "config."  # params name a key of the job body's `config` object


class ConfigError(ValueError):
    """A job configuration that cannot run; `param` names the offending key."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def _float32(value: float) -> float:
    if not abs(value) <= FLOAT32_MAX:  # NaN included
        raise ValueError(f"outside float32's finite range (|x| <= {FLOAT32_MAX:.8g})")
    return value


# A number that fits a float32 tensor: every float setting has this type.
Float = Annotated[float, AfterValidator(_float32)]


class Config(BaseModel):
    """Base of every config class: strict types, no unknown keys, and ConfigError (a
    ValueError) instead of pydantic's ValidationError when a value is refused."""

    model_config = ConfigDict(strict=True, extra="forbid", validate_assignment=True)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except pydantic.ValidationError as exc:
            raise config_error(type(self), exc) from None

    @classmethod
    def keys(cls) -> set[str]:
        return set(cls.model_fields)

    def to_json(self) -> dict[str, Any]:
        """Every key, defaults filled in, JSON-safe; the constructor takes it back."""
        return self.model_dump(mode="json")


def config_error(cls: type[Config], exc: pydantic.ValidationError) -> ConfigError:
    """The first error of a pydantic validation as a ConfigError that says what to fix."""
    error = exc.errors(include_url=False)[0]
    original = (error.get("ctx") or {}).get("error")
    if isinstance(original, ConfigError):  # a model validator's own message and key
        return original
    loc = error["loc"]
    if not loc:
        return ConfigError(str(original or error["msg"]))
    name = str(loc[0])
    if error["type"] == "extra_forbidden":
        return ConfigError(f"unknown config key {name!r}; known keys: {', '.join(sorted(cls.model_fields))}", PREFIX + name)
    value = error.get("input")
    field = cls.model_fields.get(name)
    if field is None:
        return ConfigError(f"{name}: {error['msg']}", PREFIX + name)
    if error["type"] == "value_error" and not _upper_bound(field.metadata):  # beyond float32, and no tighter limit
        return ConfigError(f"{name} is {value!r:.30}, {original}", PREFIX + name)
    wrong_type = error["type"].endswith("_type") or error["type"] in ("literal_error", "list_type")
    wanted = describe(field.annotation, field.metadata, with_type=wrong_type)
    hint = f" ({field.description})" if field.description else ""
    where = f" at index {loc[1]}" if len(loc) > 1 and isinstance(loc[1], int) else ""
    return ConfigError(f"{name} must be {wanted}{hint}, got {value!r:.60}{where}", PREFIX + name)


def describe(annotation: Any, metadata: list[Any], *, with_type: bool = True) -> str:
    """What a field accepts, in words: 'between 2 and 100', 'an integer between 2 and 100',
    "one of 'loop', 'vmap'", 'a list of one or more integers between 1 and 4096'."""
    metadata = _flat(metadata)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Annotated:
        return describe(args[0], [*args[1:], *metadata], with_type=with_type)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return describe(inner, metadata, with_type=with_type) + " or null"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is list:
        (item,) = args
        least = next((m.min_length for m in metadata if isinstance(m, annotated_types.MinLen)), 0)
        most = next((m.max_length for m in metadata if isinstance(m, annotated_types.MaxLen)), None)
        count = "" if most is None else f"at most {most} " if least == 0 else f"{least} to {most} "
        count = count or ("one or more " if least == 1 else "")
        return f"a list of {count}" + _plural(describe(item, [], with_type=True))
    bounds = _bounds(metadata)
    if annotation is bool:
        return "true or false"
    if annotation is str:
        return "a non-empty string" if any(isinstance(m, annotated_types.MinLen) for m in metadata) else "a string"
    kind = {int: "an integer", float: "a number"}.get(annotation, str(annotation))
    if not with_type and bounds:
        return bounds
    return f"{kind} {bounds}".strip()


def _plural(text: str) -> str:
    for one, many in (("an integer", "integers"), ("a number", "numbers"), ("a non-empty string", "non-empty strings"),
                      ("a string", "strings")):
        if text.startswith(one):
            return many + text[len(one):]
    return text


def _bounds(metadata: list[Any]) -> str:
    found = _bounds_of(_flat(metadata))
    ge, gt, le, lt = (found.get(k) for k in ("ge", "gt", "le", "lt"))
    if ge is not None and le is not None:
        return f"between {_num(ge)} and {_num(le)}"
    if gt is not None and le is not None:
        return f"in ({_num(gt)}, {_num(le)}]"
    if ge is not None and lt is not None:
        return f"at least {_num(ge)} and below {_num(lt)}"
    if ge is not None:
        return f"at least {_num(ge)}"
    if gt is not None:
        return "positive" if gt == 0 else f"above {_num(gt)}"
    if le is not None:
        return f"at most {_num(le)}"
    return ""


def _flat(metadata: list[Any]) -> list[Any]:
    """Constraints, with those a Field(...) inside Annotated holds taken out of it."""
    return [n for m in metadata for n in (m.metadata if isinstance(m, FieldInfo) else [m])]


def _upper_bound(metadata: list[Any]) -> bool:
    return any(isinstance(m, annotated_types.Le | annotated_types.Lt) for m in _flat(metadata))


def _bounds_of(metadata: list[Any]) -> dict[str, Any]:
    out = {}
    for m in metadata:
        for key, cls in (("ge", annotated_types.Ge), ("gt", annotated_types.Gt), ("le", annotated_types.Le),
                         ("lt", annotated_types.Lt)):
            if isinstance(m, cls):
                out[key] = getattr(m, key)
    return out


def _num(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"
