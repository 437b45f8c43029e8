"""Command-line flags generated from config dataclasses: a field declared with `option(...)` is the
flag `--field-name`, with its default, type and help taken from the field, so that adding an option is
one edit and a config can be written back as the flags that rebuild it (the torchrun line)."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from generalist.errors import ConfigError

_MISSING: Any = dataclasses.MISSING


def option(default: Any = _MISSING, *, help: str, default_factory: Any = _MISSING,  # noqa: A002
           choices: Sequence[str] | None = None, metavar: str | None = None, required: bool = False,
           example: str | None = None) -> Any:
    """A dataclass field that is also a command-line flag. `example` is a TASK=VALUE pair shown when a
    dict-valued flag is given something else; `required` makes the flag required on the command line."""
    meta = {"help": help, "choices": tuple(choices) if choices is not None else None, "metavar": metavar,
            "required": required, "example": example}
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"flag": meta})


def flag_name(name: str) -> str:
    """`eval_every` -> `--eval-every`."""
    return "--" + name.replace("_", "-")


def flag_fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """The fields of `cls` declared with `option`, each with its resolved type (None stripped)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if "flag" in f.metadata:
            args = [a for a in typing.get_args(hints[f.name]) if a is not type(None)]
            kind = args[0] if typing.get_origin(hints[f.name]) in (typing.Union, types.UnionType) else hints[f.name]
            out.append((f, kind))
    return out


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not _MISSING else f.default


def add_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one flag per `option` field of `cls` to `parser`, in field order."""
    for f, kind in flag_fields(cls):
        m = f.metadata["flag"]
        kw: dict[str, Any] = {"help": m["help"], "dest": f.name}
        if m["metavar"]:
            kw["metavar"] = m["metavar"]
        origin = typing.get_origin(kind)
        if kind is bool:
            if _default(f) is not False:
                raise TypeError(f"{cls.__name__}.{f.name}: a flag is a switch that turns a default False on")
            parser.add_argument(flag_name(f.name), action="store_true", **kw)
            continue
        if origin is list:
            kw["nargs"] = "+"
        elif origin is dict:
            kw["nargs"] = "*"  # TASK=VALUE pairs, turned into a dict by `from_args`
        else:
            kw["type"] = kind
        if m["choices"]:
            kw["choices"] = m["choices"]
        if m["required"]:
            kw["required"] = True
        else:
            kw["default"] = _default(f)
        parser.add_argument(flag_name(f.name), **kw)


def _pairs(values: list[str] | None, cast: type, flag: str, example: str | None) -> dict | None:
    """TASK=VALUE pairs of a flag to a dict (None when the flag is absent)."""
    if not values:
        return None
    try:
        return {k: cast(v) for k, v in (kv.split("=") for kv in values)}
    except ValueError:
        raise ConfigError(f"{flag} takes TASK=VALUE pairs, e.g. {example}") from None


def from_args(cls: type, args: argparse.Namespace, **overrides: Any) -> Any:
    """An instance of `cls` from the parsed flags (TASK=VALUE lists become dicts); `overrides` win."""
    values: dict[str, Any] = {}
    for f, kind in flag_fields(cls):
        v = getattr(args, f.name)
        if typing.get_origin(kind) is dict:
            v = _pairs(v, typing.get_args(kind)[1], flag_name(f.name), f.metadata["flag"]["example"])
        values[f.name] = v
    return cls(**{**values, **overrides})


def to_flags(cls: type, values: Mapping[str, Any]) -> list[str]:
    """The command-line words that set `values` (field name -> value), in their order; `from_args` of
    those words gives the same values back. Raises ConfigError for a name that is not a flag of `cls`."""
    known = {f.name: kind for f, kind in flag_fields(cls)}
    words: list[str] = []
    for name, value in values.items():
        if name not in known:
            raise ConfigError(f"{name!r} is not a {cls.__name__} option; choose from {', '.join(known)}")
        flag = flag_name(name)
        if isinstance(value, bool):
            words += [flag] if value else []
        elif isinstance(value, Mapping):
            words += [flag, *(f"{k}={v}" for k, v in value.items())]
        elif isinstance(value, list | tuple):
            words += [flag, *(str(v) for v in value)]
        elif value is not None:
            words += [flag, str(value)]
    return words


def command_line(words: Sequence[str]) -> str:
    """Words as one shell line (quoted only where needed)."""
    return " ".join(shlex.quote(w) for w in words)
