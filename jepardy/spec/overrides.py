"""`--set key=value` on `jepardy plan` and `jepardy sweep`: a trainer param given on the
command line, over the spec's [params], for every run.

A value is read as a TOML value (`0.01`, `true`, `"text"`; a bare word is text) and held to
the param's type like the spec's own values; the trainer's rules check it with each run
(`jepardy.spec.validate.check_runs`). Only params every run shares can be set: a key that is
an axis, or that a lane or an arm sets, would collapse the comparison the spec makes.

A set param changes each run's params, hence its id (`jepardy.spec.identity.run_id`), and a
value that differs from the spec's is named in each run's `match` label, so the runs of one
--set are compared with their own controls and a second sweep with the same --set resumes.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from jepardy.errors import UserError
from jepardy.spec.challenge_env import script_param_type
from jepardy.spec.expand import arm_field
from jepardy.spec.model import SCRIPT, Scalar, Spec
from jepardy.trainer.config import coerce_value

OPTION = "--set"


def apply_overrides(
    spec: Spec, items: Sequence[str], schema: Mapping[str, Mapping[str, Any]]
) -> Spec:
    """`spec` with the `--set` items (`key=value` strings) over its [params]; UserError in
    one line naming --set, the key and the value for a malformed item, an unknown or
    varying param, or a value of the wrong type."""
    overrides: dict[str, Scalar] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key, text = key.strip(), text.strip()
        if not sep or not key:
            raise UserError(f"{OPTION} {item!r}: expected KEY=VALUE")
        type_name = _param_type(spec, key, text, schema)
        overrides[key] = _typed(key, text, type_name)
        _check_shared(spec, key, text)
    # A value the spec already gives changes nothing: not an override, not in any label.
    changed = {k: v for k, v in overrides.items() if k not in spec.params or spec.params[k] != v}
    if not changed:
        return spec
    return replace(spec, params={**spec.params, **changed}, overrides=changed)


def set_where(spec: Spec, key: str) -> str | None:
    """`--set key=value` for a key the command line set (how a message names it), else None."""
    if key not in spec.overrides:
        return None
    value = spec.overrides[key]
    shown = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return f"{OPTION} {key}={shown}"


def _param_type(spec: Spec, key: str, text: str, schema: Mapping[str, Mapping[str, Any]]) -> str:
    where = f"{OPTION} {key}={text}"
    if spec.kind == SCRIPT:
        try:
            return script_param_type(key)
        except ValueError as err:
            raise UserError(f"{where}: {err}") from None
    if key == "seed":
        raise UserError(f"{where}: seeds come from the spec's sweep.seeds")
    if key not in schema:
        close = difflib.get_close_matches(key, list(schema), n=1)
        hint = f"did you mean {close[0]}?" if close else "`python -m jepardy.trainer.config`"
        raise UserError(f"{where}: unknown trainer param; {hint}")
    return str(schema[key]["type"])


def _typed(key: str, text: str, type_name: str) -> Scalar:
    """`text` as a TOML value of `type_name` (a bare word is text)."""
    try:
        value: Any = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    if type_name == "str" and not isinstance(value, str):
        value = text  # `--set data_dir=2025` is the text "2025"
    if type_name == "any":
        if isinstance(value, list | dict):
            raise UserError(f"{OPTION} {key}={text}: expected one value, not a list or table")
        return value
    try:
        return coerce_value(f"{OPTION} {key}={text}", value, type_name)
    except ValueError as err:
        raise UserError(str(err)) from None


def _check_shared(spec: Spec, key: str, text: str) -> None:
    """UserError when `key` varies between the spec's runs (an axis, or a lane's or an
    arm's own param): one value for every run would collapse that comparison."""
    where = _varying_field(spec, key)
    if where:
        raise UserError(
            f"{OPTION} {key}={text}: {key} is set by {where} in {spec.path}; "
            f"{OPTION} sets params every run shares ([params])"
        )


def _varying_field(spec: Spec, key: str) -> str | None:
    if key in spec.axes:
        return f"axes.{key}"
    for lane in spec.lanes:
        for scope, table in (("axes", lane.axes), ("params", lane.params)):
            if key in table:
                return f"lanes.{lane.name}.{scope}.{key}"
        for arm in (lane.control, *lane.arms):
            if key in arm.params or key in arm.axes:
                return f"lanes.{lane.name}.{arm_field(arm.name)}.{key}"
    return None
