"""The battery of malformed and hostile specs `jepardy plan` must refuse in one short line,
with nothing written (tests/test_validate.py runs it): runs the trainer could not run, and
files that are not specs at all (broken TOML, bad names, shell and markup in names, ...).

Each case is (id, spec text or bytes, what the one line must say).
"""

from __future__ import annotations

# A valid spec of 4 runs (control and jepa, 2 seeds) that each case below breaks one way.
BASE = """\
[sweep]
name = "hostile"
seeds = [1, 2]
{sweep}
[trainer]
nproc = {nproc}

[params]
n_layers = 2
d_model = 64
{params}
[lanes.main]
control = {{}}

[lanes.main.arms.jepa]
jepa_weight = 0.1
{arm}"""

MAX_LINE = 300


def spec_text(params: str = "", arm: str = "", sweep: str = "", nproc: int = 1) -> str:
    return BASE.format(params=params, arm=arm, sweep=sweep, nproc=nproc)


def grid(name: str) -> str:
    return f'{name} = {{ start = "0.001", stop = "0.100", step = "0.001" }}\n'  # 100 points


# Runs the trainer could not run: values, ranges, choices, cross-field rules, run counts.
HOSTILE_RUNS: list[tuple[str, str | bytes, list[str]]] = [
    ("unknown-preset", spec_text('preset = "gpt5"'), ["preset = 'gpt5'", "not a preset"]),
    ("device-tpu", spec_text('device = "tpu"'), ["device = 'tpu'", "'cuda'"]),
    ("iterations-0", spec_text("iterations = 0"), ["iterations = 0", ">= 1"]),
    (
        "n-layers-negative",
        spec_text("n_layers = -1").replace("n_layers = 2\n", ""),
        ["n_layers = -1"],
    ),
    ("warmdown-1.5", spec_text("warmdown_frac = 1.5"), ["warmdown_frac = 1.5", "in [0, 1]"]),
    ("quant-bits-1", spec_text("quant_bits = 1"), ["quant_bits = 1", "in [2, 8]"]),
    ("quant-bits-9", spec_text("quant_bits = 9"), ["quant_bits = 9"]),
    ("heads-not-dividing", spec_text("n_heads = 3"), ["n_heads = 3", "divide d_model = 64"]),
    ("heads-zero", spec_text("n_heads = 0"), ["n_heads = 0", ">= 1"]),
    ("kv-heads-not-dividing", spec_text("n_kv_heads = 3"), ["n_kv_heads = 3", "n_heads = 4"]),
    (
        "kv-heads-zero-in-lane",
        spec_text().replace("control = {}", "params = { n_kv_heads = 0 }\ncontrol = {}"),
        ["n_kv_heads = 0"],
    ),
    (
        "odd-head-dim",
        spec_text("d_model = 36").replace("d_model = 64\n", ""),
        ["d_model = 36", "even"],
    ),
    ("lr-inf", spec_text("lr = inf"), ["lr = inf", "finite"]),
    ("lr-minus-inf", spec_text("lr = -inf"), ["lr = -inf", "finite"]),
    ("lr-nan", spec_text("lr = nan"), ["lr = nan", "finite"]),
    ("lr-negative", spec_text("lr = -0.5"), ["lr = -0.5", ">= 0"]),
    ("lr-axis-inf", spec_text("[axes]\nlr = [0.001, inf]\n"), ["lr = inf", "lr=inf"]),
    (
        "lr-grid-negative",
        spec_text(arm='embed_lr = { start = "-0.1", stop = "0.1", step = "0.1" }'),
        ["embed_lr = -0.1"],
    ),
    (
        "jepa-weight-negative-arm-axis",
        spec_text(arm="").replace("jepa_weight = 0.1", "jepa_weight = [0.1, -0.1]"),
        ["jepa_weight = -0.1", "jepa_weight=-0.1"],
    ),
    (
        "int-past-int64",
        spec_text("iterations = 9223372036854775808"),
        ["iterations = 9223372036854775808", "64-bit"],
    ),
    (
        "int-far-past-int64",
        spec_text("val_max_tokens = " + "9" * 400),
        ["val_max_tokens = 999", "64-bit"],
    ),
    (
        "seed-past-int64",
        spec_text().replace("seeds = [1, 2]", "seeds = [1, 9223372036854775808]"),
        ["sweep.seeds[1]", "2^63"],
    ),
    (
        "grid-times-seeds",
        spec_text(arm='lr = { start = "0.0001", stop = "1.0000", step = "0.0001" }').replace(
            "seeds = [1, 2]", f"seeds = {list(range(100))}"
        ),
        ["sweep.max_runs", "1,000,100 runs", "10,000"],
    ),
    (
        "product-of-grids",
        spec_text(
            "[axes]\n"
            + "".join(
                grid(n)
                for n in (
                    "lr",
                    "embed_lr",
                    "scalar_lr",
                    "jepa_lr",
                    "grad_clip",
                    "init_std",
                    "beta1",
                    "beta2",
                )
            )
        ),
        ["sweep.max_runs", "4.00e+16 runs"],
    ),
    (
        "max-runs-under-count",
        spec_text(sweep="max_runs = 3"),
        ["sweep.max_runs", "4 runs", "limit of 3"],
    ),
    ("max-runs-zero", spec_text(sweep="max_runs = 0"), ["sweep.max_runs", "0 is a int", ">= 1"]),
    (
        "seq-len-not-patches",
        spec_text("seq_len = 100\ntrain_batch_tokens = 4000"),
        ["seq_len = 100", "jepa_patch_size = 8", "lanes.main.arms.jepa"],
    ),
    (
        "seq-len-one-patch",
        spec_text("seq_len = 8\njepa_patch_size = 8"),
        ["seq_len = 8", "2 patches"],
    ),
    ("patch-size-zero", spec_text("jepa_patch_size = 0"), ["jepa_patch_size = 0", ">= 1"]),
    ("batch-not-split-over-nproc", spec_text(nproc=3), ["train_batch_tokens = 4096", "3 rank(s)"]),
    (
        "batch-not-whole-sequences",
        spec_text("train_batch_tokens = 1000"),
        ["train_batch_tokens = 1000", "seq_len = 128"],
    ),
    (
        "micro-batch-not-sequences",
        spec_text("micro_batch_tokens = 100"),
        ["micro_batch_tokens = 100"],
    ),
    ("rope-dims-odd", spec_text("rope_dims = 3"), ["rope_dims = 3", "head_dim = 16"]),
    ("rope-dims-past-head", spec_text("rope_dims = 64"), ["rope_dims = 64"]),
    ("rope-base-zero", spec_text("rope_base = 0.0"), ["rope_base = 0.0", "> 0"]),
    ("xsa-past-layers", spec_text("xsa_last_n = 3"), ["xsa_last_n = 3", "n_layers = 2"]),
    ("value-embed-negative", spec_text("value_embed_last_n = -1"), ["value_embed_last_n = -1"]),
    ("bigram-one-bucket", spec_text("bigram_hash_buckets = 1"), ["bigram_hash_buckets = 1"]),
    ("beta2-one", spec_text("beta2 = 1.0"), ["beta2 = 1.0", "in [0, 1)"]),
    ("ema-decay-one", spec_text("ema = true\nema_decay = 1.0"), ["ema_decay = 1.0"]),
    ("muon-momentum-1.5", spec_text("muon_momentum = 1.5"), ["muon_momentum = 1.5"]),
    ("optimizer-sgd", spec_text('optimizer = "sgd"'), ["optimizer = 'sgd'", "'muon'"]),
    ("jepa-target-unknown", spec_text('jepa_target = "teacher"'), ["jepa_target = 'teacher'"]),
    ("activation-unknown", spec_text('mlp_activation = "gelu"'), ["mlp_activation = 'gelu'"]),
    ("init-unknown", spec_text('matrix_init = "xavier"'), ["matrix_init = 'xavier'"]),
    (
        "eval-stride-past-seq",
        spec_text("eval_stride = 256"),
        ["eval_stride = 256", "seq_len = 128"],
    ),
    ("log-every-zero", spec_text("log_every = 0"), ["log_every = 0"]),
    ("init-std-negative", spec_text("init_std = -0.02"), ["init_std = -0.02"]),
    ("zstd-level-23", spec_text("zstd_level = 23"), ["zstd_level = 23"]),
    ("vocab-one", spec_text("vocab_size = 1"), ["vocab_size = 1", ">= 2"]),
    ("wallclock-negative", spec_text("wallclock_s = -1.0"), ["wallclock_s = -1.0"]),
    ("val-batch-zero", spec_text("val_batch_tokens = 0"), ["val_batch_tokens = 0"]),
    (
        "preset-then-bad-width",
        spec_text('preset = "naive_baseline"\nd_model = 500').replace("d_model = 64\n", ""),
        ["n_heads = 8", "d_model = 500"],
    ),
    ("megabyte-preset-name", spec_text(f'preset = "{"x" * 1_000_000}"'), ["preset = 'xxxx", "..."]),
    (
        "megabyte-string-for-float",
        spec_text(f'lr = "{"x" * 1_000_000}"'),
        ["params.lr", "is a str; expected float"],
    ),
]


def _without_arm_value(text: str) -> str:
    return text.replace("jepa_weight = 0.1", "")


BASE_TEXT = spec_text()

# Files that are not well-formed specs: syntax, encodings, names, tables, types, structure.
HOSTILE_FILES: list[tuple[str, str | bytes, list[str]]] = [
    ("not-toml", "this is not toml", ["line 1, column 6", "expected valid TOML"]),
    ("not-utf8", b"\xff\xfe[sweep]\n", ["byte 0 is not UTF-8"]),
    ("utf8-bom", "\ufeff" + BASE_TEXT, ["line 1, column 1", "expected valid TOML"]),
    ("cr-line-ends", BASE_TEXT.replace("\n", "\r"), ["expected valid TOML"]),
    ("empty-file", "", ["sweep.name: missing"]),
    ("duplicate-toml-key", spec_text("lr = 0.1\nlr = 0.2"), ["Cannot overwrite a value"]),
    ("deep-nesting", spec_text("x = " + "[" * 2000 + "]" * 2000), ["nested too deep"]),
    ("ten-thousand-char-key", spec_text("k" * 10_000 + " = 1"), ["a key of 10,000 characters"]),
    ("no-sweep-name", BASE_TEXT.replace('name = "hostile"\n', ""), ["sweep.name: missing"]),
    (
        "name-path-traversal",
        BASE_TEXT.replace('"hostile"', '"../../etc"'),
        ["sweep.name: '../../etc' is not a valid name"],
    ),
    ("name-nul", BASE_TEXT.replace('"hostile"', '"a\\u0000b"'), ["sweep.name: 'a\\x00b'"]),
    ("seeds-empty", BASE_TEXT.replace("[1, 2]", "[]"), ["sweep.seeds: [] is empty"]),
    ("seeds-string", BASE_TEXT.replace("[1, 2]", '["a"]'), ["sweep.seeds[0]: 'a'"]),
    ("seeds-twice", BASE_TEXT.replace("[1, 2]", "[1, 1]"), ["sweep.seeds[1]: 1 appears twice"]),
    ("seeds-negative", BASE_TEXT.replace("[1, 2]", "[-1]"), ["sweep.seeds[0]: -1"]),
    ("unknown-table", BASE_TEXT + "\n[foo]\nx = 1\n", ["foo: unknown table"]),
    (
        "trainer-kind-bash",
        BASE_TEXT.replace("[trainer]\n", '[trainer]\nkind = "bash"\n'),
        ["trainer.kind: 'bash' is not supported"],
    ),
    ("nproc-zero", spec_text(nproc=0), ["trainer.nproc: 0 is not an int >= 1"]),
    ("nproc-string", BASE_TEXT.replace("nproc = 1", 'nproc = "8"'), ["trainer.nproc: '8'"]),
    ("param-typo", spec_text("jepa_wieght = 0.1"), ["did you mean jepa_weight?"]),
    ("upper-case-param", spec_text("MUON_WD = 0.04"), ["params.MUON_WD: unknown trainer param"]),
    ("axis-empty", spec_text("[axes]\nlr = []\n"), ["axes.lr: [] is empty"]),
    ("axis-not-list", spec_text("[axes]\nlr = 0.1\n"), ["axes.lr: 0.1 is a float"]),
    ("axis-twice", spec_text("[axes]\nlr = [0.1, 0.1]\n"), ["axes.lr[1]: 0.1 appears twice"]),
    ("axis-mixed-types", spec_text('[axes]\nlr = [0.1, "x"]\n'), ["axes.lr[1]: 'x' is a str"]),
    ("axis-seed", spec_text("[axes]\nseed = [1, 2]\n"), ["axes.seed: seed is set by sweep"]),
    (
        "grid-step-zero",
        spec_text(arm='lr = { start = "0.1", stop = "0.2", step = "0" }'),
        ["lanes.main.arms.jepa.lr.step: 0 is not positive"],
    ),
    (
        "grid-stop-below-start",
        spec_text(arm='lr = { start = "0.3", stop = "0.2", step = "0.1" }'),
        ["lr.stop: 0.2 is below start 0.3"],
    ),
    (
        "grid-unknown-key",
        spec_text(arm='lr = { start = "0.1", stop = "0.2", step = "0.1", by = 2 }'),
        ["lr.by: unknown key"],
    ),
    (
        "grid-step-1e-300",
        spec_text(arm='lr = { start = "0", stop = "1", step = "1e-300" }'),
        ["gives too many points"],
    ),
    ("lane-no-control", BASE_TEXT.replace("control = {}\n", ""), ["lanes.main: no control arm"]),
    ("control-not-table", BASE_TEXT.replace("control = {}", "control = 5"), ["5 is a int"]),
    ("lanes-missing", BASE_TEXT.split("[lanes.main]")[0], ["lanes: missing"]),
    (
        "arm-same-as-control",
        _without_arm_value(BASE_TEXT),
        ["resolves to the same params as arm control"],
    ),
    (
        "after-unknown-lane",
        BASE_TEXT.replace("control = {}", 'after = ["nosuch"]\ncontrol = {}'),
        ["lanes.main.after: 'nosuch' is not an earlier lane"],
    ),
    (
        "after-itself",
        BASE_TEXT.replace("control = {}", 'after = ["main"]\ncontrol = {}'),
        ["lanes.main.after: 'main' is not an earlier lane"],
    ),
    (
        "arm-name-shell",
        BASE_TEXT.replace("arms.jepa]", 'arms."$(touch pwned)"]'),
        ["'$(touch pwned)' is not a valid name"],
    ),
    ("key-closing-markup-tag", spec_text('"[/bold]" = 1'), ["params.[/bold]: unknown"]),
    (
        "lane-name-markup",
        BASE_TEXT.replace("lanes.main", 'lanes."[red]x"'),
        ["lanes.[red]x: '[red]x' is not a valid name"],
    ),
    ("bool-as-string", spec_text('ema = "yes"'), ["params.ema: 'yes' is a str; expected bool"]),
    ("int-as-float", spec_text("mlp_mult = 2.5"), ["params.mlp_mult: 2.5 is a float"]),
    ("param-a-date", spec_text("lr = 1979-05-27"), ["params.lr: datetime.date(1979, 5, 27)"]),
    ("param-a-table", spec_text("lr = { a = { b = 1 } }"), ["params.lr: {'a': {'b': 1}}"]),
    ("param-a-list", spec_text("lr = [0.1, 0.2]"), ["lists go in axes or arms"]),
    (
        "zip-unequal",
        spec_text("[axes]\nlr = [0.1, 0.2]\nema = [true]\n", sweep='zip = [["lr", "ema"]]'),
        ["sweep.zip[0]: axes of different lengths"],
    ),
    (
        "zip-unknown-axis",
        spec_text("[axes]\nlr = [0.1, 0.2]\n", sweep='zip = [["lr", "nosuch"]]'),
        ["sweep.zip[0][1]: 'nosuch'"],
    ),
    ("slurm-unknown-key", BASE_TEXT + "\n[slurm]\nfoo = 1\n", ["slurm.foo: unknown key"]),
    ("seq-len-zero", spec_text("seq_len = 0"), ["seq_len = 0: must be >= 1"]),
    ("grad-clip-negative", spec_text("grad_clip = -1.0"), ["grad_clip = -1.0: must be >= 0"]),
    (
        "arm-weight-nan",
        BASE_TEXT.replace("jepa_weight = 0.1", "jepa_weight = nan"),
        ["lanes.main.arms.jepa (run seed=1): jepa_weight = nan: must be finite"],
    ),
]

HOSTILE = HOSTILE_RUNS + HOSTILE_FILES
