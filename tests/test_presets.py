"""Presets: what each one sets, how explicit params override it, and that each one trains."""

from __future__ import annotations

import math
from dataclasses import asdict

import pytest
import torch

from jepardy.data.corpus import EmbeddedCorpus, build_embedded
from jepardy.errors import UserError
from jepardy.trainer.checkpoint import CHECKPOINT_FILE, load_final
from jepardy.trainer.config import TrainConfig, config_from_params, schema
from jepardy.trainer.presets import PRESETS, reduced
from jepardy.trainer.scoring import MODEL_FILE
from jepardy.trainer.train import Dist, RunLog, train

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> EmbeddedCorpus:
    return build_embedded(tmp_path_factory.mktemp("embedded"))


def data_params(corpus: EmbeddedCorpus, byte_level: bool) -> dict:
    if byte_level:
        return {"data_dir": str(corpus.byte260_dir), "tokenizer_path": ""}
    return {"data_dir": str(corpus.sp1024_dir), "tokenizer_path": str(corpus.tokenizer_model)}


# --- what each preset sets ------------------------------------------------------------------


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_is_a_valid_config(name):
    config = config_from_params({"preset": name})
    assert config.preset == name
    for field, value in PRESETS[name].items():
        assert getattr(config, field) == value, field


def test_naive_baseline_is_the_challenge_baseline():
    c = config_from_params({"preset": "naive_baseline"})
    shape = (c.n_layers, c.d_model, c.n_heads, c.n_kv_heads, c.vocab_size, c.mlp_mult)
    assert shape == (9, 512, 8, 4, 1024, 2)
    assert c.mlp_activation == "relu2" and c.embed_norm and c.resid_mix and c.unet_skips
    assert (c.seq_len, c.train_batch_tokens) == (1024, 524_288)
    assert (c.optimizer, c.lr, c.embed_lr, c.scalar_lr) == ("muon", 0.04, 0.05, 0.04)
    assert (c.muon_momentum, c.muon_momentum_warmup_start) == (0.95, 0.85)
    assert (c.grad_clip, c.wallclock_s, c.warmup_steps) == (0.0, 600.0, 0)
    assert not c.smear_gate and c.bigram_hash_buckets == 0 and c.xsa_last_n == 0


def test_leader_stack_is_the_studys_stack():
    c = config_from_params({"preset": "leader_stack"})
    assert (c.n_layers, c.d_model, c.n_heads, c.n_kv_heads, c.mlp_mult) == (11, 512, 8, 4, 3)
    assert c.mlp_activation == "leaky_relu2" and c.rope_dims == 16
    assert c.unet_skips and c.smear_gate and c.bigram_hash_buckets == 1536
    assert c.xsa_last_n == 4 and c.value_embed_last_n == 2
    assert (c.optimizer, c.lr, c.embed_lr, c.scalar_lr) == ("muon", 0.025, 0.035, 0.025)
    assert (c.grad_clip, c.ema, c.ema_decay) == (0.3, True, 0.997)
    assert (c.seq_len, c.train_batch_tokens, c.wallclock_s) == (2048, 786_432, 600.0)
    assert c.eval_stride == 64
    assert c.rope_base == 10000.0 and c.rope_train_seq_len == 1024


def test_isolation_byte_is_the_baseline_on_bytes():
    c = config_from_params({"preset": "isolation_byte"})
    assert (c.vocab_size, c.tokenizer_path) == (260, "")
    assert (c.n_layers, c.d_model) == (9, 512)
    assert (c.seq_len, c.train_batch_tokens, c.wallclock_s) == (1024, 131_072, 180.0)
    assert c.jepa_target == "ema"


# --- presets and explicit params ------------------------------------------------------------


def test_explicit_params_override_the_preset():
    c = config_from_params({"preset": "leader_stack", "n_layers": 3, "xsa_last_n": 1})
    assert (c.n_layers, c.xsa_last_n) == (3, 1)
    assert c.d_model == 512 and c.optimizer == "muon"  # the rest still from the preset


def test_no_preset_means_the_tiny_defaults():
    assert config_from_params({}) == TrainConfig()
    assert config_from_params({"preset": ""}) == TrainConfig()
    defaults = TrainConfig()
    assert defaults.optimizer == "adamw" and not defaults.unet_skips and defaults.eval_stride == 0


def test_unknown_preset_is_one_line_naming_the_presets():
    with pytest.raises(UserError) as err:
        config_from_params({"preset": "leader"}, source="run.json: params")
    assert str(err.value) == (
        "run.json: params: preset: 'leader' is not a preset; "
        "known: naive_baseline, leader_stack, isolation_byte"
    )


def test_choice_fields_are_checked_and_listed_in_the_schema():
    with pytest.raises(
        UserError, match=r"config: optimizer = 'sgd': must be one of 'adamw', 'muon'"
    ):
        config_from_params({"optimizer": "sgd"})
    fields = schema()
    assert fields["preset"]["choices"] == ["", *PRESETS]
    assert fields["optimizer"]["choices"] == ["adamw", "muon"]
    assert "choices" not in fields["n_layers"]


def test_resolved_config_round_trips_through_params():
    """config.json / final.pt hold every field; reading them back gives the same config."""
    config = config_from_params({"preset": "leader_stack", "n_layers": 5})
    assert config_from_params(asdict(config)) == config


# --- every preset trains --------------------------------------------------------------------


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_trains_a_few_steps_at_toy_size(name, corpus, tmp_path):
    params = reduced(name) | data_params(corpus, name == "isolation_byte")
    params |= {"device": "cpu", "iterations": 3, "val_max_tokens": 1024, "jepa_weight": 0.1}
    config = config_from_params(params)
    log = RunLog(tmp_path, enabled=True)
    result = train(config, Dist(0, 1, CPU), log, tmp_path, run_id="toy")
    log.close()
    assert result["steps"] == 3
    assert math.isfinite(result["val_bpb"]) and math.isfinite(result["prequant_val_bpb"])
    assert result["mfu"] is None and result["tokens_per_s"] > 0  # a CPU has no MFU
    assert result["compiled"] is False
    for group, drift in result["group_drift"].items():
        assert drift > 0, f"{group} did not move"
    if config.eval_stride:
        assert math.isfinite(result["sliding_val_bpb"])
    else:
        assert result["sliding_val_bpb"] is None
    assert (tmp_path / MODEL_FILE).stat().st_size == result["model_bytes"]
    run_id, saved, state = load_final(tmp_path / CHECKPOINT_FILE)
    assert run_id == "toy" and saved == asdict(config)
    assert not any(k.startswith(("predictor", "target_encoder")) for k in state)
    text = (tmp_path / "train.log").read_text()
    assert "compile:off autocast:off (torch.compile and bf16 are for CUDA" in text
    assert "optimizer_group:matrix optimizer:muon" in text


def test_plan_accepts_a_spec_that_names_a_preset(cli, tmp_path):
    # 4 layers: the preset's XSA covers its last 4 blocks (n_layers 2 is refused at plan time).
    spec = tmp_path / "spec.toml"
    spec.write_text(
        "[sweep]\nname = 'presets'\nseeds = [1]\n\n"
        "[params]\npreset = 'leader_stack'\nn_layers = 4\n\n"
        "[lanes.main]\ncontrol = { jepa_weight = 0.0 }\n\n"
        "[lanes.main.arms.jepa]\njepa_weight = 0.1\n"
    )
    proc = cli.run("plan", spec, "--db", tmp_path / "none.db", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "presets: 2 runs" in proc.stdout
