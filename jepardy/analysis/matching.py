"""What an arm and its control must share for their comparison to mean anything, in a module
without pandas or scipy: ingest matches a results table's rows on it, and compare checks it.
"""

from __future__ import annotations

# The code that ran, the data, the budget and the launch shape (the study's headline
# compared runs of other code and other seeds). Seeds are checked apart (compare.UNPAIRED).
# Params outside this list may be the arm's own axes, which the store does not single out.
MATCH_PARAMS = (
    "data_dir",
    "tokenizer_path",
    "vocab_size",
    "seq_len",
    "train_batch_tokens",
    "iterations",
    "preset",
)
MATCH_COLUMNS = ("code_sha256", "kind", "nproc", "wallclock_s")
