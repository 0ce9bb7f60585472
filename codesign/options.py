"""Options declared once, on config dataclasses: default, help text and choices in one place.

A config dataclass field made with :func:`option` carries its command-line help, its choices
(a tuple, or a callable returning the names registered *now*, so plugins appear in ``--help``),
and, where it differs from the field name, its flag and config-file key. From that one
declaration:

* :func:`add_options` adds the argparse flags, with the dataclass default printed in the help;
* :func:`resolve` merges the dataclass defaults < a ``--config`` file < the flags given;
* the keys a ``--config`` file accepts are the same names (:func:`option_keys`).

timm's ``parser.set_defaults(**cfg)`` shows the idea: the flag, the file key and the printed
default are one thing, never three. Flags default to ``None`` in argparse so that a config file
can fill what the command line leaves out.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, Callable, Iterable, Mapping, Sequence

from .errors import ConfigError

#: Metadata key of an option's declaration on a dataclass field.
META = "option"


@dataclasses.dataclass(frozen=True)
class Option:
    """How a config field appears on the command line and in config files.

    Attributes:
        help: one line for ``--help`` (the default is appended automatically).
        key: the flag name and config-file key with ``_`` (default: the field name).
        choices: accepted values, or a callable returning them (evaluated when the parser is built).
        parse: converts a command-line or file value (e.g. ``"1h"`` -> 3600.0); its errors name the value.
        metavar: argparse metavar.
        show_default: the default as printed (default: the field default).
    """

    help: str
    key: str | None = None
    choices: Sequence[Any] | Callable[[], Sequence[Any]] | None = None
    parse: Callable[[Any], Any] | None = None
    metavar: str | tuple[str, ...] | None = None
    show_default: str | None = None

    def resolved_choices(self) -> list[Any] | None:
        """The choices as a list (calling the callable), or None."""
        if self.choices is None:
            return None
        return list(self.choices() if callable(self.choices) else self.choices)


def option(default: Any = dataclasses.MISSING, help: str = "", *, default_factory: Any = dataclasses.MISSING,
           **kwargs: Any) -> Any:
    """A dataclass ``field`` with an :class:`Option` declaration (see the module docstring)."""
    meta = {META: Option(help=help, **kwargs)}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def same_as(cls: type, name: str, **changes: Any) -> Any:
    """A field declared like ``cls.name`` (same default, help, choices), with ``changes`` to the option.

    Lets a second config (the search's) offer an option of the first (distill's) without
    writing its default or help again. ``default=`` in ``changes`` replaces the default.
    """
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    opt = f.metadata.get(META)
    default = changes.pop("default", f.default)
    if opt is not None and changes:
        opt = dataclasses.replace(opt, **changes)
    meta = {META: opt} if opt is not None else {}
    if default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=f.default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def option_fields(cls: type) -> list[tuple[dataclasses.Field, Option]]:
    """The fields of ``cls`` that are options, with their declarations, in field order."""
    return [(f, f.metadata[META]) for f in dataclasses.fields(cls) if META in f.metadata]


def option_key(f: dataclasses.Field, opt: Option) -> str:
    """The config-file key (and flag name with ``-``) of a field."""
    return opt.key or f.name


def option_keys(cls: type) -> list[str]:
    """Every config-file key that ``cls`` declares."""
    return [option_key(f, o) for f, o in option_fields(cls)]


def field_default(f: dataclasses.Field) -> Any:
    """The default value of a dataclass field (calling its factory)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def format_default(value: Any) -> str:
    """A default as ``--help`` prints it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value)) if value else "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "none"
    return str(value)


def help_text(f: dataclasses.Field, opt: Option) -> str:
    """The help line of a field's flag: its help, its choices and its real default."""
    text = opt.help
    choices = opt.resolved_choices()
    if choices:
        text += f" (one of: {', '.join(map(str, choices))})"
    shown = opt.show_default if opt.show_default is not None else format_default(field_default(f))
    return f"{text} (default: {shown})".replace("%", "%%")


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """``(element type, is_list)`` of a field annotation such as ``int | None`` or ``tuple[str, ...]``."""
    if isinstance(annotation, str):  # postponed annotations: resolve the few forms we use
        annotation = eval(annotation, {"Any": Any, "tuple": tuple, "list": list, "dict": dict})  # noqa: S307
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(args[0]) if len(args) == 1 else (str, False)
    if origin in (list, tuple):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        return (args[0] if args else str), True
    return annotation, False


def add_options(parser: argparse.ArgumentParser, cls: type, *, only: Iterable[str] | None = None,
                skip: Iterable[str] = ()) -> None:
    """Add a flag for every option of ``cls`` (or those whose key is in ``only``), minus ``skip``."""
    only = None if only is None else set(only)
    skip = set(skip)
    for f, opt in option_fields(cls):
        key = option_key(f, opt)
        if key in skip or (only is not None and key not in only):
            continue
        flag = "--" + key.replace("_", "-")
        typ, is_list = _base_type(f.type)
        kwargs: dict[str, Any] = {"dest": key, "default": None, "help": help_text(f, opt)}
        if opt.metavar is not None:
            kwargs["metavar"] = opt.metavar
        if typ is bool and not is_list:
            parser.add_argument(flag, action="store_true", **kwargs)
            continue
        if typ is dict or key == "set":
            parser.add_argument(flag, action="append", **kwargs)
            continue
        if opt.parse is None and typ in (int, float):
            kwargs["type"] = typ
        if is_list:
            kwargs["nargs"] = len(field_default(f)) if opt.metavar and isinstance(opt.metavar, tuple) else "+"
            if isinstance(opt.metavar, tuple):
                kwargs["nargs"] = len(opt.metavar)
        parser.add_argument(flag, **kwargs)


def resolve(args: argparse.Namespace | None, file_values: Mapping[str, Any], classes: Sequence[type],
            command: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every option's value: flag given > config file > dataclass default; parsed and checked.

    Args:
        args: parsed flags (None: file and defaults only).
        file_values: a ``--config`` file's keys (``-`` already turned into ``_``).
        classes: the config dataclasses whose options the command takes (first one wins a key).
        command: the command's name, for error messages.
        extra: command-only keys (``json``, ``out``...) and their defaults.

    Raises:
        ConfigError: a file key no option declares (listing the known keys), or a value its
            parser refuses. Values are validated by the config dataclass built from them.
    """
    fields: dict[str, tuple[dataclasses.Field, Option]] = {}
    for cls in classes:
        for f, opt in option_fields(cls):
            fields.setdefault(option_key(f, opt), (f, opt))
    extra = dict(extra or {})
    known = set(fields) | set(extra)
    unknown = sorted(set(file_values) - known)
    if unknown:
        raise ConfigError(
            f"config file: unknown key(s) {', '.join(unknown)} for '{command}'; known keys: {', '.join(sorted(known))}"
        )
    out: dict[str, Any] = {}
    for key in [*fields, *extra]:
        flag = getattr(args, key, None) if args is not None else None
        if flag is not None:
            value, given = flag, True
        elif key in file_values:
            value, given = file_values[key], True
        else:
            value, given = (field_default(fields[key][0]) if key in fields else extra[key]), False
        if key in fields and given:
            value = _check(key, value, *fields[key])
        out[key] = value
    return out


def _check(key: str, value: Any, f: dataclasses.Field, opt: Option) -> Any:
    # Choices are shown in --help; the config dataclass validates the value itself, with the
    # message that knows most (an unknown device lists the installed ones and why one failed).
    # Here only the type is checked (a config file can hold anything), so that a string where a
    # number belongs is one line naming the key, not a TypeError deep inside the pipeline.
    if opt.parse is not None and value is not None:
        return opt.parse(value)
    if key != "set":
        check_type(key, value, f.type)
    return value


_TYPE_WORDS = {bool: ("true or false", "booleans"), int: ("an integer", "integers"),
               float: ("a number", "numbers"), str: ("a string", "strings")}


def _is(value: Any, typ: Any) -> bool:
    if typ is bool:
        return isinstance(value, bool)
    if typ is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if typ is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, typ) if isinstance(typ, type) else True


def check_type(key: str, value: Any, annotation: Any) -> None:
    """Raise :class:`ConfigError` unless ``value`` fits a field annotation (``int | None``,
    ``tuple[str, ...]``, ``tuple[int, int]``...); annotations it does not understand pass.

    A variable-length tuple field also takes one scalar (``datasets = "mnist"``).
    """
    if isinstance(annotation, str):
        try:
            annotation = eval(annotation, {"Any": Any, "tuple": tuple, "list": list, "dict": dict})  # noqa: S307
        except Exception:  # an annotation we cannot read: leave the value to the dataclass
            return
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return
        simple = [a for a in args if a is not type(None)]
        if all(a in _TYPE_WORDS for a in simple):
            if not any(_is(value, a) for a in simple):
                words = " or ".join(_TYPE_WORDS[a][0] for a in simple)
                raise ConfigError(f"{key}={value!r}: expected {words}")
            return
        if len(simple) == 1:
            check_type(key, value, simple[0])
        return
    if origin in (tuple, list):
        args = typing.get_args(annotation)
        variable = origin is list or not args or (len(args) == 2 and args[1] is Ellipsis)
        elem = args[0] if args else Any
        if elem not in _TYPE_WORDS:
            return
        words = _TYPE_WORDS[elem][1]
        if not isinstance(value, (list, tuple)):
            if variable and _is(value, elem):
                return
            size = "a list of" if variable else f"a list of {len(args)}"
            raise ConfigError(f"{key}={value!r}: expected {size} {words}")
        bad = [v for v in value if not _is(v, elem)]
        if bad or (not variable and len(value) != len(args)):
            size = "a list of" if variable else f"a list of {len(args)}"
            raise ConfigError(f"{key}={list(value)!r}: expected {size} {words}")
        return
    if annotation in _TYPE_WORDS and not _is(value, annotation):
        raise ConfigError(f"{key}={value!r}: expected {_TYPE_WORDS[annotation][0]}")


def convert_text(name: str, value: Any, like: Any) -> Any:
    """A command-line string converted to the type of ``like`` (a field's default or current value).

    ``--set adc_bits=6`` and ``--degree 3`` arrive as strings; booleans accept
    ``1/true/yes/on`` and ``0/false/no/off``. Anything that is not a string, or a field whose
    value is a string, None or unset, passes through unchanged.

    Raises:
        ConfigError: naming the field, the value and the type expected.
    """
    if not isinstance(value, str) or isinstance(like, str) or like is None or like is dataclasses.MISSING:
        return value
    try:
        if isinstance(like, bool):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if isinstance(like, int):
            return int(value)
        if isinstance(like, float):
            return float(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r}: expected a value of type {type(like).__name__}") from None
    return value


@dataclasses.dataclass(frozen=True)
class PlainConfig:
    """Base of a plugin's config (a device's ``Config``, a dictionary's ``Params``).

    Frozen plain data, validated at construction: subclasses declare fields with defaults and
    ``metadata={"doc": ...}`` and implement :meth:`validate`, raising
    :class:`~codesign.errors.ConfigError` that names the field and its allowed range (use
    :func:`codesign.errors.check_range`).
    """

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field; raise ``ConfigError`` naming the field and its allowed range."""

    @classmethod
    def field_docs(cls) -> dict[str, tuple[Any, str]]:
        """``{field: (default, one-line doc)}`` for listings and generated flags."""
        return {
            f.name: (None if f.default is dataclasses.MISSING else f.default, f.metadata.get("doc", ""))
            for f in dataclasses.fields(cls)
        }
