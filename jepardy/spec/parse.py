"""Sweep specs: a TOML file -> the validated dataclasses of `jepardy.spec.model`.

`load_spec` reads and checks the whole file (every mistake is a one-line `UserError` naming
the file and the dotted field); `jepardy.spec.expand.expand_runs` turns the result into
`RunIdentity`s. Nothing here launches anything or touches the store; the only files read are
the spec itself and the trainer's source (for its digest, never imported).

The TOML layout, the precedence of params and the run identity are the contracts in
docs/architecture.md ("Spec (TOML) -> runs", "Run identity").
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from jepardy.errors import UserError, clipped_repr
from jepardy.spec.axis_scope import check_overlaps, parse_zip
from jepardy.spec.challenge_env import script_param_type
from jepardy.spec.expand import expand_runs
from jepardy.spec.grid import GRID_KEYS, float_grid
from jepardy.spec.identity import trainer_code_digest
from jepardy.spec.model import (
    CONTROL,
    DEFAULT_MAX_RUNS,
    KINDS,
    NAME_PATTERN,
    SCRIPT,
    Arm,
    Axes,
    Lane,
    Scalar,
    Spec,
)
from jepardy.spec.overrides import apply_overrides
from jepardy.spec.promote import check_chain, every_candidate, parse_promote
from jepardy.spec.slurm import SLURM_KEYS, slurm_value_problem
from jepardy.spec.tomlfile import decode, describe, parse_toml, read_bytes
from jepardy.spec.validate import check_run_count, check_runs
from jepardy.trainer.config import coerce_value

_TOP_KEYS = ("sweep", "trainer", "params", "axes", "lanes", "slurm")
_SWEEP_KEYS = ("name", "description", "seeds", "zip", "max_runs")
_TRAINER_KEYS = ("kind", "nproc", "path")
_LANE_KEYS = (
    *("description", "after", "params", "axes", "control", "arms"),
    *("seeds", "nproc", "promote"),
)
# Seeds reach torch.manual_seed and the store's BIGINT column.
_INT64_MAX = 2**63 - 1


def load_spec(
    path: Path,
    schema: Mapping[str, Mapping[str, Any]],
    *,
    trainer_rules: bool = True,
    overrides: Sequence[str] = (),
) -> Spec:
    """Read, parse and fully validate a spec against the trainer's param schema.

    `schema` maps param name -> {"type": "int"|"float"|"bool"|"str", "default": ...}, as
    `jepardy.trainer.config.schema()` returns it. Raises `UserError` (one line) for any
    mistake, including more runs than `max_runs`, duplicate runs and (unless `trainer_rules`
    is False, for a schema that is not the jepardy trainer's) a run the trainer would refuse
    (`jepardy.spec.validate`), so a returned Spec always expands to runnable runs.
    `overrides`: `--set key=value` items over [params] (`jepardy.spec.overrides`).
    """
    data = read_bytes(path)
    text = decode(path, data)
    raw = parse_toml(path, text)
    spec = _Parser(str(path), schema).spec(raw, path, text, hashlib.sha256(data).hexdigest())
    spec = apply_overrides(spec, overrides, schema)
    # Promoted lanes are checked as if every candidate won: what the spec can come to run.
    most = every_candidate(spec)
    check_run_count(most)  # before a single run is built
    runs = expand_runs(most)  # duplicate runs are only visible after expansion
    if trainer_rules:
        check_runs(most, runs)
    return spec


# --- validation --------------------------------------------------------------------------


def _unknown(found: str, allowed: Sequence[str], otherwise: str) -> str:
    close = difflib.get_close_matches(found, allowed, n=1)
    return f"did you mean {close[0]}?" if close else otherwise


class _Parser:
    """Turns the parsed TOML into a Spec; every `fail` names the file and the dotted field."""

    def __init__(self, file: str, schema: Mapping[str, Mapping[str, Any]]) -> None:
        self.file = file
        self.schema = schema
        self.script_kind = False  # set from trainer.kind before any param is read

    def fail(self, where: str, what: str) -> NoReturn:
        # Quoted TOML keys may hold newlines; the message must stay one line.
        raise UserError(f"{self.file}: {where}: {what}".replace("\n", "\\n"))

    # structure

    def spec(self, raw: dict[str, Any], path: Path, text: str, sha256: str) -> Spec:
        # Section by section, [sweep] first: the first mistake reported is the most basic one.
        self.check_keys(raw, "", _TOP_KEYS)
        sweep = self.table(raw, "sweep", "")
        self.check_keys(sweep, "sweep", _SWEEP_KEYS)
        name = self.name(sweep.get("name"), "sweep.name")
        description = self.text(sweep, "description", "sweep")
        seeds = self.seeds(sweep.get("seeds"), "sweep.seeds")
        max_runs = self.max_runs(sweep.get("max_runs", DEFAULT_MAX_RUNS))
        trainer = self.table(raw, "trainer", "")
        self.check_keys(trainer, "trainer", _TRAINER_KEYS)
        kind = self.kind(trainer.get("kind", KINDS[0]))
        self.script_kind = kind == SCRIPT
        script = self.script(trainer.get("path"), path)
        nproc = self.nproc(trainer.get("nproc", 1), "trainer.nproc")
        params = self.params(self.table(raw, "params", ""), "params")
        axes = self.axes(self.table(raw, "axes", ""), "axes")
        lanes = self.lanes(raw)
        check_overlaps(axes, lanes, self.fail)
        zip_groups = parse_zip(sweep.get("zip"), axes, lanes, self.fail)
        slurm = self.slurm(self.table(raw, "slurm", ""))
        return Spec(
            path=path,
            text=text,
            sha256=sha256,
            code_digest=_file_sha256(script) if script else trainer_code_digest(),
            name=name,
            description=description,
            seeds=seeds,
            max_runs=max_runs,
            zip_groups=zip_groups,
            kind=kind,
            nproc=nproc,
            params=params,
            axes=axes,
            lanes=lanes,
            script=script,
            slurm=slurm,
        )

    def slurm(self, table: dict[str, Any]) -> dict[str, str | int]:
        """The [slurm] table: sbatch settings of `jepardy sweep --executor slurm` (its options
        override them), checked against SlurmOptions."""
        self.check_keys(table, "slurm", SLURM_KEYS)
        for key, value in table.items():
            if problem := slurm_value_problem(key, value):
                self.fail(f"slurm.{key}", f"{describe(value)}; {problem}")
        return dict(table)

    def check_keys(self, table: dict[str, Any], prefix: str, allowed: Sequence[str]) -> None:
        for key, value in table.items():
            if key not in allowed:
                what = "unknown table" if isinstance(value, dict) else "unknown key"
                hint = _unknown(key, allowed, f"allowed: {', '.join(allowed)}")
                self.fail(_join(prefix, key), f"{what}; {hint}")

    def table(self, parent: dict[str, Any], key: str, prefix: str) -> dict[str, Any]:
        """parent[key] as a table; a missing key is an empty table."""
        return self.as_table(parent.get(key, {}), _join(prefix, key))

    def as_table(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(where, f"{describe(value)}; expected a table")
        return value

    def name(self, value: Any, where: str) -> str:
        if value is None:
            self.fail(where, f"missing; a name matching {NAME_PATTERN.pattern} is required")
        if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
            self.fail(
                where,
                f"{clipped_repr(value)} is not a valid name; names match {NAME_PATTERN.pattern}",
            )
        return value

    def text(self, table: dict[str, Any], key: str, prefix: str) -> str:
        value = table.get(key, "")
        if not isinstance(value, str):
            self.fail(_join(prefix, key), f"{describe(value)}; expected a string")
        return value

    def lanes(self, raw: dict[str, Any]) -> tuple[Lane, ...]:
        lanes = self.table(raw, "lanes", "")
        if not lanes:
            self.fail("lanes", "missing; at least one [lanes.<name>] table is required")
        parsed = check_chain([self.lane(name, value) for name, value in lanes.items()], self.fail)
        for index, lane in enumerate(parsed):
            earlier = [other.name for other in parsed[:index]]
            for dep in lane.after:
                if dep not in earlier:
                    allowed = ", ".join(earlier) or "none"
                    self.fail(
                        f"lanes.{lane.name}.after",
                        f"{clipped_repr(dep)} is not an earlier lane; earlier lanes: {allowed}",
                    )
        return parsed

    def lane(self, name: str, value: Any) -> Lane:
        where = f"lanes.{name}"
        self.name(name, where)
        raw = self.as_table(value, where)
        self.check_keys(raw, where, _LANE_KEYS)
        if "control" not in raw:
            self.fail(where, "no control arm; add control = { ... } (it may be empty: {})")
        control = Arm(
            CONTROL, self.params(self.table(raw, "control", where), f"{where}.control"), {}
        )
        arms = self.table(raw, "arms", where)
        return Lane(
            name=name,
            description=self.text(raw, "description", where),
            params=self.params(self.table(raw, "params", where), f"{where}.params"),
            axes=self.axes(self.table(raw, "axes", where), f"{where}.axes"),
            control=control,
            arms=tuple(self.arm(arm, arms, f"{where}.arms") for arm in arms),
            after=self.lane_names(raw.get("after", []), f"{where}.after"),
            seeds=self.seeds(raw["seeds"], f"{where}.seeds") if "seeds" in raw else None,
            nproc=self.nproc(raw["nproc"], f"{where}.nproc") if "nproc" in raw else None,
            promote=parse_promote(raw["promote"], f"{where}.promote", self.fail)
            if "promote" in raw
            else None,
        )

    def lane_names(self, value: Any, where: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(where, f"{describe(value)}; expected a list of lane names")
        return tuple(value)

    def arm(self, name: str, arms: dict[str, Any], prefix: str) -> Arm:
        """An arm table: a scalar is an arm param, a list or a float grid is an arm axis."""
        where = f"{prefix}.{name}"
        self.name(name, where)
        if name == CONTROL:
            self.fail(where, "'control' is the lane's control arm; give this arm another name")
        params: dict[str, Scalar] = {}
        axes: Axes = {}
        for key, value in self.table(arms, name, prefix).items():
            if isinstance(value, list | dict):
                axes[key] = self.axis(key, value, f"{where}.{key}")
            else:
                params[key] = self.value(key, value, f"{where}.{key}")
        return Arm(name, params, axes)

    # values

    def param_name(self, name: str, where: str) -> str:
        """The schema type of trainer param `name`; unknown names and `seed` are refused.

        For a script trainer the types come from the challenge table (`challenge_env`), and
        an upper-case environment variable has type "any" (its value's own type)."""
        if self.script_kind:
            try:
                return script_param_type(name)
            except ValueError as err:
                self.fail(where, str(err))
        if name == "seed":
            self.fail(where, "seed is set by sweep.seeds; not allowed as a param")
        if name not in self.schema:
            hint = _unknown(
                name, list(self.schema), "`python -m jepardy.trainer.config` lists them"
            )
            self.fail(where, f"unknown trainer param; {hint}")
        return str(self.schema[name]["type"])

    def value(self, name: str, value: Any, where: str) -> Scalar:
        type_name = self.param_name(name, where)
        if isinstance(value, list | dict):
            self.fail(
                where, f"{describe(value)}; expected one {type_name} (lists go in axes or arms)"
            )
        return self.coerce(value, type_name, where)

    def coerce(self, value: Any, type_name: str, where: str) -> Scalar:
        if type_name == "any":
            if not isinstance(value, bool | int | float | str):
                self.fail(where, f"{describe(value)}; expected a bool, int, float or string")
            return value
        try:
            # coerce_value starts its message with the name it is given: pass the field.
            return coerce_value(where, value, type_name)
        except ValueError as err:
            raise UserError(f"{self.file}: {err}") from None

    def params(self, table: dict[str, Any], prefix: str) -> dict[str, Scalar]:
        return {key: self.value(key, value, f"{prefix}.{key}") for key, value in table.items()}

    def axes(self, table: dict[str, Any], prefix: str) -> Axes:
        return {key: self.axis(key, value, f"{prefix}.{key}") for key, value in table.items()}

    def axis(self, name: str, value: Any, where: str) -> tuple[Scalar, ...]:
        """A non-empty list of distinct values, or a float grid {start, stop, step}."""
        type_name = self.param_name(name, where)
        if isinstance(value, dict):
            if type_name not in ("float", "any"):
                self.fail(where, f"a float grid on a {type_name} param; use a list of values")
            self.check_keys(value, where, GRID_KEYS)
            return float_grid(value, where, self.fail)
        if not isinstance(value, list):
            self.fail(where, f"{describe(value)}; expected a list of values or a float grid")
        if not value:
            self.fail(where, "[] is empty; an axis needs at least one value")
        values = tuple(self.coerce(v, type_name, f"{where}[{i}]") for i, v in enumerate(value))
        seen: dict[Scalar, int] = {}  # a dict, not a list scan: axes may hold 10^5 values
        for i, v in enumerate(values):
            if seen.setdefault(v, i) != i:
                self.fail(
                    f"{where}[{i}]",
                    f"{clipped_repr(v)} appears twice; axis values must be distinct",
                )
        return values

    # sweep-wide rules

    def seeds(self, seeds: Any, where: str) -> tuple[int, ...]:
        allowed = "expected a non-empty list of distinct ints"
        if seeds is None:
            self.fail(where, f"missing; {allowed}")
        if not isinstance(seeds, list):
            self.fail(where, f"{describe(seeds)}; {allowed}")
        if not seeds:
            self.fail(where, f"[] is empty; {allowed}")
        seen: set[int] = set()
        for i, seed in enumerate(seeds):
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                self.fail(f"{where}[{i}]", f"{clipped_repr(seed)} is not an int >= 0; {allowed}")
            if seed > _INT64_MAX:
                self.fail(f"{where}[{i}]", f"{clipped_repr(seed)} is over 2^63 - 1; {allowed}")
            if seed in seen:
                self.fail(f"{where}[{i}]", f"{seed} appears twice; {allowed}")
            seen.add(seed)
        return tuple(seeds)

    def max_runs(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            self.fail("sweep.max_runs", f"{describe(value)}; expected an int >= 1")
        return value

    def kind(self, value: Any) -> str:
        if value not in KINDS:
            self.fail(
                "trainer.kind",
                f"{clipped_repr(value)} is not supported; allowed: {', '.join(KINDS)}",
            )
        return str(value)

    def script(self, value: Any, spec_path: Path) -> Path | None:
        """trainer.path: required for kind "script" (an existing file, relative to the spec's
        folder), refused for other kinds."""
        if not self.script_kind:
            if value is not None:
                self.fail(
                    "trainer.path", f'{clipped_repr(value)}: only kind "{SCRIPT}" takes a path'
                )
            return None
        if not isinstance(value, str) or not value:
            self.fail(
                "trainer.path",
                f'{clipped_repr(value)}: kind "{SCRIPT}" needs the path of its script',
            )
        script = (spec_path.parent / value).resolve()
        if not script.is_file():
            self.fail("trainer.path", f"{clipped_repr(value)}: {script} is not a file")
        return script

    def nproc(self, value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            self.fail(
                where, f"{clipped_repr(value)} is not an int >= 1; expected processes per run"
            )
        return value


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key
