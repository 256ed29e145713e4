"""launch.py's flags from its configuration dataclasses, as HfArgumentParser makes train.py's.

A field with a `help` in its metadata is a flag: its name (or the metadata's `flag`) names
it, its type and default make the argument, so each default is written once. launch.py
runs without transformers, so this is argparse, in one small function each way.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from typing import Any

from multilabel.sagemaker.session import LaunchError


def _flag_fields(config_class: type) -> list[tuple[dataclasses.Field, Any]]:
    """The fields that are flags (those with a `help`), each with its resolved type."""
    hints = typing.get_type_hints(config_class)
    return [(f, hints[f.name]) for f in dataclasses.fields(config_class) if "help" in f.metadata]


def _flag_name(f: dataclasses.Field) -> str:
    return f.metadata.get("flag", "--" + f.name.replace("_", "-"))


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def add_config_flags(parser: argparse.ArgumentParser, config_class: type) -> None:
    """One argument per flag field of `config_class`, from its type, default and metadata.

    `X | None`: an optional X; bool: an on/off switch; list[str]: a repeatable flag;
    dict: a repeatable KEY=VALUE flag; no default: a required flag.
    """
    for f, hint in _flag_fields(config_class):
        flag = _flag_name(f)
        kwargs: dict[str, Any] = {"dest": f.name, **{k: v for k, v in f.metadata.items() if k != "flag"}}
        default = _default_of(f)
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
        origin = typing.get_origin(hint) or hint
        if default is dataclasses.MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = default
            if default not in (None, False, [], {}):
                kwargs["help"] += f" (default: {default})"
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction if default else "store_true"
        elif origin is list:
            kwargs.update(action="append", default=[])
        elif origin is dict:
            kwargs.update(action="append", default=[], metavar=kwargs.get("metavar", "KEY=VALUE"))
        else:
            kwargs["type"] = hint
        if hint is not bool and "choices" not in kwargs:
            kwargs.setdefault("metavar", flag.lstrip("-").replace("-", "_").upper())
        parser.add_argument(flag, **kwargs)


def config_from(args: argparse.Namespace, config_class: type, **values: Any):
    """The `config_class` instance of the parsed flags (and `values`, for fields that are not flags)."""
    for f, hint in _flag_fields(config_class):
        value = getattr(args, f.name)
        if typing.get_origin(hint) is dict:
            value = _pairs(value, _flag_name(f))
            if typing.get_args(hint)[1] is str:
                value = {k: str(v) for k, v in value.items()}
        values[f.name] = value
    return config_class(**values)


def _pairs(values: list[str], flag: str) -> dict[str, Any]:
    """`key=value` flags -> dict; values parsed as JSON where they are JSON (numbers, booleans)."""
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise LaunchError(f"{flag} {item!r}: expected key=value")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out
