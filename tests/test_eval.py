"""val_loss and val_bpb: the sums behind the score, checked against independent counts."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from jepardy.data.corpus import EmbeddedCorpus, build_embedded
from jepardy.data.shards import list_shards, read_shard
from jepardy.data.tokenizer import (
    BOS_ID,
    BYTE_OFFSET,
    byte260_tables,
    count_target_bytes,
    encode_bytes,
    load_sentencepiece,
    sentencepiece_byte_tables,
)
from jepardy.trainer.data import TrainBatches, load_val_tokens
from jepardy.trainer.distributed import Dist
from jepardy.trainer.eval import ByteCounter, evaluate, evaluate_sliding, sliding_windows
from jepardy.trainer.model import GPT, GPTShape

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> EmbeddedCorpus:
    return build_embedded(tmp_path_factory.mktemp("embedded"))


@pytest.fixture(scope="module")
def sp_tables(corpus):
    return sentencepiece_byte_tables(corpus.tokenizer_model, 1024)


def tiny_gpt(vocab_size: int) -> GPT:
    torch.manual_seed(0)
    gpt = GPT(
        GPTShape(
            vocab_size=vocab_size,
            n_layers=1,
            d_model=16,
            n_heads=2,
            n_kv_heads=1,
            mlp_mult=2,
            rope_base=10000.0,
            logit_softcap=30.0,
            init_std=0.5,  # confident, wrong guesses: losses far from ln(vocab)
        )
    )
    for block in gpt.blocks:
        nn.init.normal_(block.attn.proj.weight, std=0.1)
        nn.init.normal_(block.mlp.proj.weight, std=0.1)
    return gpt


def expected_sums(gpt: GPT, tokens: np.ndarray, seq_len: int, tables) -> tuple[float, int, int]:
    """(loss sum in nats, targets, bytes), computed apart from evaluate(): one forward over
    all sequences, log-softmax in float64, bytes from the numpy tables."""
    n = (len(tokens) - 1) // seq_len * seq_len
    x = torch.from_numpy(tokens[:n].astype(np.int64)).view(-1, seq_len)
    y = torch.from_numpy(tokens[1 : n + 1].astype(np.int64)).view(-1, seq_len)
    with torch.no_grad():
        logp = gpt.logits(gpt(x)).double().log_softmax(dim=-1)
    loss_sum = float(-logp.gather(-1, y[..., None]).sum())
    n_bytes = int(count_target_bytes(x.numpy(), y.numpy(), tables).sum())
    return loss_sum, y.numel(), n_bytes


def test_sp1024_sums_match_an_independent_count(corpus, sp_tables):
    seq_len = 32
    tokens = load_val_tokens(str(corpus.sp1024_dir), seq_len, max_tokens=5 * seq_len)
    assert len(tokens) == 5 * seq_len + 1
    gpt = tiny_gpt(1024)
    loss_sum, n_targets, n_bytes = expected_sums(gpt, tokens, seq_len, sp_tables)
    # Sanity of the independent count: SentencePiece pieces average more than a byte.
    assert n_bytes > n_targets

    counter = ByteCounter(sp_tables, CPU)
    gpt.train()
    # 2 sequences per batch: batches of 2, 2 and 1 sequences.
    result = evaluate(gpt, tokens, counter, seq_len, 2 * seq_len, Dist.local())
    assert gpt.training  # evaluate restores the mode it found
    assert result.tokens == n_targets == 5 * seq_len
    assert result.bytes_total == n_bytes
    assert result.val_loss == pytest.approx(loss_sum / n_targets, rel=1e-6)
    assert result.val_bpb == pytest.approx(loss_sum / math.log(2) / n_bytes, rel=1e-6)
    assert result.val_bpb == pytest.approx(
        result.val_loss * result.tokens / math.log(2) / result.bytes_total, rel=1e-12
    )
    # The batch size changes nothing.
    one_batch = evaluate(gpt, tokens, counter, seq_len, 1 << 20, Dist.local())
    assert one_batch.bytes_total == result.bytes_total
    assert one_batch.val_bpb == pytest.approx(result.val_bpb, rel=1e-9)


def test_hand_counted_bytes_of_two_documents(corpus, sp_tables):
    """BOS 'Hello world' BOS 'Hi there': 11 + 8 bytes; BOS targets and the dummy-prefix
    space after BOS count nothing."""
    sp = load_sentencepiece(corpus.tokenizer_model)
    tokens = np.array(
        [BOS_ID, *sp.encode("Hello world"), BOS_ID, *sp.encode("Hi there")], dtype=np.uint16
    )
    seq_len = len(tokens) - 1  # one sequence holds every target
    gpt = tiny_gpt(1024)
    result = evaluate(gpt, tokens, ByteCounter(sp_tables, CPU), seq_len, 4096, Dist.local())
    assert result.tokens == len(tokens) - 1
    assert result.bytes_total == len("Hello world") + len("Hi there") == 19
    loss_sum, _, _ = expected_sums(gpt, tokens, seq_len, sp_tables)
    assert result.val_bpb == pytest.approx(loss_sum / math.log(2) / 19, rel=1e-6)


def test_byte260_bytes_are_the_non_special_targets(corpus):
    tables = byte260_tables()
    counter = ByteCounter(tables, CPU)
    gpt = tiny_gpt(260)
    # By hand: targets 'a', 'b', BOS, 'c' -> 3 bytes.
    tokens = np.array([BOS_ID, *encode_bytes("ab"), BOS_ID, *encode_bytes("c")], dtype=np.uint16)
    assert evaluate(gpt, tokens, counter, 4, 4096, Dist.local()).bytes_total == 3

    # A window of the val shard across the first document boundary.
    seq_len = 64
    shard = read_shard(list_shards(corpus.byte260_dir, "val")[0])
    second_doc = int(np.flatnonzero(shard == BOS_ID)[1])
    tokens = shard[second_doc - 100 : second_doc - 100 + 8 * seq_len + 1]
    result = evaluate(gpt, tokens, counter, seq_len, 3 * seq_len, Dist.local())
    targets = tokens[1 : 8 * seq_len + 1]
    assert (targets < BYTE_OFFSET).any()  # a BOS is among them, so the case is not trivial
    assert result.bytes_total == int((targets >= BYTE_OFFSET).sum())
    loss_sum, n_targets, n_bytes = expected_sums(gpt, tokens, seq_len, tables)
    assert result.bytes_total == n_bytes and result.tokens == n_targets
    assert result.val_bpb == pytest.approx(loss_sum / math.log(2) / n_bytes, rel=1e-6)


@pytest.mark.parametrize("dataset", ["sp1024", "byte260"])
def test_whole_val_shard_bytes_equal_the_val_text_bytes(corpus, sp_tables, dataset):
    manifest = json.loads(corpus.manifest_path.read_text())
    text_bytes = manifest["documents"]["val"]["text_bytes"]
    if dataset == "sp1024":
        data_dir, tables, vocab = corpus.sp1024_dir, sp_tables, 1024
    else:
        data_dir, tables, vocab = corpus.byte260_dir, byte260_tables(), 260
    tokens = np.concatenate([read_shard(p) for p in list_shards(data_dir, "val")])
    assert tokens[0] == BOS_ID
    n_docs = manifest["documents"]["val"]["count"]
    assert int((tokens == BOS_ID).sum()) == n_docs
    # The tables alone: every target after the first token, BOS targets worth 0.
    assert int(count_target_bytes(tokens[:-1], tokens[1:], tables).sum()) == text_bytes
    # evaluate() over every target (seq_len 1 leaves none out) counts the same bytes.
    result = evaluate(tiny_gpt(vocab), tokens, ByteCounter(tables, CPU), 1, 8192, Dist.local())
    assert result.tokens == len(tokens) - 1
    assert result.bytes_total == text_bytes


# --- sliding-window evaluation --------------------------------------------------------------


@pytest.mark.parametrize(
    ("targets", "seq_len", "stride"),
    [(256, 64, 16), (250, 64, 16), (100, 64, 64), (70, 64, 48), (40, 64, 16), (64, 64, 1)],
)
def test_sliding_windows_score_every_target_once_with_long_context(targets, seq_len, stride):
    length = min(seq_len, targets)
    scored = []
    for start, first in sliding_windows(targets, seq_len, stride):
        assert start >= 0 and start + length <= targets  # windows never run off the end
        for position in range(first, length):
            target = start + position
            scored.append(target)
            # Context: everything before it in the first window, else >= seq_len - stride.
            assert position == target if start == 0 else position >= length - stride
    assert sorted(scored) == list(range(targets))  # each exactly once


def trained_gpt(corpus: EmbeddedCorpus, steps: int = 60) -> GPT:
    """A tiny GPT trained briefly on the corpus: enough to use its context."""

    torch.manual_seed(0)
    gpt = GPT(
        GPTShape(
            vocab_size=1024,
            n_layers=2,
            d_model=32,
            n_heads=4,
            n_kv_heads=2,
            mlp_mult=2,
            rope_base=10000.0,
            logit_softcap=30.0,
            init_std=0.02,
        )
    )
    opt = torch.optim.AdamW(gpt.parameters(), lr=1e-2)
    batches = TrainBatches(str(corpus.sp1024_dir), 2048, 64, Dist.local())
    for _ in range(steps):
        [(x, y)] = batches.next_step()
        gpt.token_losses(x, y).mean().backward()
        opt.step()
        opt.zero_grad()
    return gpt


@pytest.fixture(scope="module")
def trained(corpus) -> GPT:
    return trained_gpt(corpus)


def test_sliding_at_stride_seq_len_is_the_plain_evaluation(corpus, sp_tables, trained):
    seq_len = 64
    tokens = load_val_tokens(str(corpus.sp1024_dir), seq_len, max_tokens=20 * seq_len)
    counter = ByteCounter(sp_tables, CPU)
    plain = evaluate(trained, tokens, counter, seq_len, 4 * seq_len, Dist.local())
    sliding = evaluate_sliding(
        trained, tokens, counter, seq_len, seq_len, 3 * seq_len, Dist.local()
    )
    assert (sliding.tokens, sliding.bytes_total) == (plain.tokens, plain.bytes_total)
    assert sliding.val_bpb == pytest.approx(plain.val_bpb, rel=1e-9)


def test_sliding_bpb_is_not_worse_than_plain_on_the_same_weights(corpus, sp_tables, trained):
    seq_len = 64
    tokens = load_val_tokens(str(corpus.sp1024_dir), seq_len, max_tokens=40 * seq_len)
    counter = ByteCounter(sp_tables, CPU)
    plain = evaluate(trained, tokens, counter, seq_len, 8 * seq_len, Dist.local())
    sliding = evaluate_sliding(trained, tokens, counter, seq_len, 16, 8 * seq_len, Dist.local())
    # The same targets and bytes, each scored once ...
    assert (sliding.tokens, sliding.bytes_total) == (plain.tokens, plain.bytes_total)
    # ... with more context: a trained model does better.
    assert sliding.val_bpb <= plain.val_bpb
    # The batch size changes nothing.
    other = evaluate_sliding(trained, tokens, counter, seq_len, 16, 1 << 20, Dist.local())
    assert other.val_bpb == pytest.approx(sliding.val_bpb, rel=1e-9)


def test_sliding_matches_an_independent_count(corpus, sp_tables, trained):
    """Each target's loss recomputed alone, from the window sliding_windows assigns it."""
    seq_len, stride = 32, 8
    tokens = load_val_tokens(str(corpus.sp1024_dir), seq_len, max_tokens=4 * seq_len)
    counter = ByteCounter(sp_tables, CPU)
    result = evaluate_sliding(trained, tokens, counter, seq_len, stride, 2 * seq_len, Dist.local())
    loss_sum, n_bytes, n = 0.0, 0, 0
    all_tokens = torch.from_numpy(tokens.astype(np.int64))
    for start, first in sliding_windows(len(tokens) - 1, seq_len, stride):
        x = all_tokens[start : start + seq_len][None]
        y = all_tokens[start + 1 : start + seq_len + 1][None]
        with torch.no_grad():
            logp = trained.logits(trained(x)).double().log_softmax(-1)
        loss_sum -= float(logp.gather(-1, y[..., None])[0, first:].sum())
        n_bytes += int(
            count_target_bytes(x[0, first:].numpy(), y[0, first:].numpy(), sp_tables).sum()
        )
        n += seq_len - first
    assert (result.tokens, result.bytes_total) == (n, n_bytes)
    assert result.val_bpb == pytest.approx(loss_sum / math.log(2) / n_bytes, rel=1e-6)
