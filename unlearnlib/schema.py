"""Typed loading of dataclasses from YAML mappings, the one config error, range checks and hashing.

The bottom layer of the package: it imports nothing of ``unlearnlib``, so every module (the training loop, the
methods, the metrics, the paper schema) can declare and check its own options with it.

- :func:`from_dict` builds a dataclass from a mapping: unknown keys, missing keys, wrong types and invalid
  choices (``Literal`` fields) are a :class:`ConfigError` naming the dotted path; then it calls the dataclass's
  ``check()`` (when it has one), so ranges and cross-field rules fail when the YAML loads, not hours later when
  the value is used. ``check()`` raises :class:`ConfigError` (or ``ValueError``) naming the field; the path is
  put in front of it here.
- :func:`check_range` is the one range check those ``check()`` methods use; :func:`check_seeds` and
  :func:`parse_seeds` check seeds (a YAML's and the run parameter's).
- :class:`StrictLoader` is PyYAML's safe loader that refuses a key given twice in one mapping (PyYAML silently
  keeps the last).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config or run parameter is invalid; the message names the field and what is valid."""


# ----------------------------------------------------------------------------------------------
# reading YAML


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys in a mapping (a second ``methods:`` would replace the first
    without a word)."""


def _construct_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, f"a mapping key must be a plain value, got {type(key).__name__}", key_node.start_mark
            ) from None
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first given on line {seen[key] + 1}; the second would "
                f"silently replace the first)", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(text: str, name: str) -> Any:
    """Parse YAML ``text`` (from the file called ``name``) with :class:`StrictLoader`; a syntax error, a Python tag
    or a duplicate key is one :class:`ConfigError` naming the file, line and column."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # StrictLoader is a SafeLoader: no Python tags
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else name
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None


# ----------------------------------------------------------------------------------------------
# typed loading


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check(value: Any, tp: Any, where: str) -> Any:
    """``value`` as type ``tp`` (a YAML value: lists become tuples where the type says so), else one
    :class:`ConfigError` naming ``where``."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    checker = _CHECKERS.get(origin) or _CHECKERS.get(tp)
    return checker(value, tp, where) if checker else value


def _check_literal(value: Any, tp: Any, where: str) -> Any:
    args = typing.get_args(tp)
    if isinstance(value, bool) or not _hashable(value) or value not in args:
        raise ConfigError(f"{where}: {value!r} is not a valid choice; valid: "
                          f"{', '.join(repr(a) if a == '' else str(a) for a in args)}")
    return value


def _check_union(value: Any, tp: Any, where: str) -> Any:
    args = typing.get_args(tp)
    for a in args:
        try:
            return _check(value, a, where)
        except ConfigError:
            pass
    raise ConfigError(f"{where}: expected {' or '.join(_type_name(a) for a in args)}, "
                      f"got {type(value).__name__} {value!r}")


def _check_none(value: Any, tp: Any, where: str) -> None:
    if value is not None:
        raise ConfigError(f"{where}: expected null, got {value!r}")


def _check_sequence(value: Any, tp: Any, where: str) -> list | tuple:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
    args = typing.get_args(tp)
    inner = args[0] if args else Any
    out = [_check(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    return tuple(out) if typing.get_origin(tp) is tuple else out


def _check_mapping(value: Any, tp: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{where}: keys must be names (text), got {bad[0]!r}")
    args = typing.get_args(tp)
    inner = args[1] if args else Any
    return {k: _check(v, inner, f"{where}.{k}") for k, v in value.items()}


def _check_float(value: Any, tp: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def _check_int(value: Any, tp: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: expected an integer, got {type(value).__name__} {value!r}")
    return value


def _check_plain(value: Any, tp: Any, where: str) -> Any:
    if not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
    return value


_CHECKERS = {typing.Literal: _check_literal, typing.Union: _check_union, types.UnionType: _check_union,
             type(None): _check_none, list: _check_sequence, tuple: _check_sequence, dict: _check_mapping,
             float: _check_float, int: _check_int, str: _check_plain, bool: _check_plain}


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping; unknown keys, wrong types and values its ``check()`` refuses raise
    :class:`ConfigError` with the dotted path ``where``."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    keys = [k for k in data if not isinstance(k, str)]
    if keys:
        raise ConfigError(f"{where or cls.__name__}: keys must be names (text), got {keys[0]!r}; "
                          f"valid keys: {', '.join(names)}")
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{where or cls.__name__}: unknown key(s) {', '.join(unknown)}; "
                          f"valid keys: {', '.join(names)}")
    required = [f.name for f in dataclasses.fields(cls) if f.init and f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING]
    missing = [k for k in required if k not in data]
    if missing:
        raise ConfigError(f"{where or cls.__name__}: missing key(s) {', '.join(missing)}")
    kwargs = {k: _check(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    obj = cls(**kwargs)
    run_check(obj, where)
    return obj


def run_check(obj: Any, where: str = "") -> None:
    """Call ``obj.check()`` (ranges and cross-field rules), if it has one; its error gets the path in front."""
    check = getattr(obj, "check", None)
    if check is None:
        return
    try:
        check()
    except ValueError as e:  # ConfigError included
        msg = str(e)
        if not where:
            raise ConfigError(msg) from None
        head = msg.split(":", 1)[0].split(".", 1)[0].split("[", 1)[0]  # "epochs: ..." names a field: join with "."
        names = {f.name for f in dataclasses.fields(obj)}
        raise ConfigError(f"{where}.{msg}" if head in names else f"{where}: {msg}") from None


def check_instance(obj: Any, where: str = "") -> None:
    """Validate an already built dataclass (a method's Config made in code): types, choices and ranges, as from
    YAML."""
    from_dict(type(obj), {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init},
              where or type(obj).__name__)


# ----------------------------------------------------------------------------------------------
# ranges


def check_range(obj: Any, *names: str, ge: float | None = None, gt: float | None = None, le: float | None = None,
                lt: float | None = None, optional: bool = False) -> None:
    """Each field ``names`` of ``obj`` lies in the stated bounds (``optional``: ``None`` is allowed too); else one
    :class:`ConfigError` ``"<field>: <value> is out of range; valid: <bounds>"``."""
    bounds = [f"{op} {b:g}" for op, b in ((">=", ge), (">", gt), ("<=", le), ("<", lt)) if b is not None]
    for name in names:
        value = getattr(obj, name)
        if value is None and optional:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if (v is None or (ge is not None and v < ge) or (gt is not None and v <= gt)
                    or (le is not None and v > le) or (lt is not None and v >= lt)):
                valid = " and ".join(bounds) + (" (or null)" if optional else "")
                raise ConfigError(f"{name}: {value!r} is out of range; valid: {valid}")


SEED_MAX = 2**32 - 1 - 3  # numpy's default_rng takes [0, 2**32); the harness adds up to 2 to a seed (+3 to be safe)
# the profiles every paper YAML declares (a claim is checked on all by default)
PROFILES = ("paper", "fast", "cpu", "smoke")


# ----------------------------------------------------------------------------------------------
# seeds (a YAML's ``seeds`` and the run parameter)


def check_seeds(seeds: list[int], where: str = "seeds") -> list[int]:
    """Seeds are distinct integers in [0, SEED_MAX], at least one (numpy's generators take [0, 2**32); the harness
    adds up to 3 to a seed); else one :class:`ConfigError` naming what is wrong."""
    valid = f"valid: distinct integers 0 .. {SEED_MAX}, at least one"
    if not seeds:
        raise ConfigError(f"{where}: no seed given; {valid}")
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= SEED_MAX]
    if bad:
        raise ConfigError(f"{where}: {bad[0]!r} is out of range; {valid}")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ConfigError(f"{where}: {', '.join(map(str, repeated))} given more than once (the same cells would be "
                          f"computed twice); {valid}")
    return list(seeds)


def parse_seeds(seeds: Any, default: list[int]) -> list[int]:
    """Seeds as a papermill parameter: None/"" (the profile's), an int, a list of ints, or "1,2,3"; checked by
    :func:`check_seeds`."""
    if seeds is None or seeds == "":
        return check_seeds(list(default))
    if isinstance(seeds, bool):
        raise ConfigError(f"seeds: expected an int, a list of ints or a string like '1,2', got bool {seeds!r}")
    if isinstance(seeds, int):
        return check_seeds([seeds])
    if isinstance(seeds, str):
        parts = seeds.replace(" ", "").split(",")
        if not all(p.isdigit() and p.isascii() for p in parts):
            raise ConfigError(f"seeds: {seeds!r} is not a comma-separated list of non-negative integers "
                              f"(e.g. '0,1,2')")
        return check_seeds([int(p) for p in parts])
    if isinstance(seeds, (list, tuple)) and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        return check_seeds(list(seeds))
    raise ConfigError(f"seeds: expected an int, a list of ints or a string like '1,2', "
                      f"got {type(seeds).__name__} {seeds!r}")


# ----------------------------------------------------------------------------------------------
# plain data and hashing


def to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


# a dataclass field with this metadata enters a key only when it differs from its default: an option added later
# leaves the keys of every config that does not use it (and so every cached cell) as they were
KEY_IF_SET = {"key": "if_set"}


def key_dict(obj: Any) -> Any:
    """:func:`to_dict` as it enters a key: fields marked :data:`KEY_IF_SET` are left out at their defaults."""
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if f.metadata.get("key") == "if_set" and f.default is not dataclasses.MISSING and v == f.default:
                continue
            out[f.name] = key_dict(v)
        return out
    if isinstance(obj, (list, tuple)):
        return [key_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: key_dict(v) for k, v in obj.items()}
    return obj


def config_hash(*parts: Any) -> str:
    blob = json.dumps([key_dict(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
