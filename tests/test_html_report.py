"""`jepardy report --format html`: one self-contained file, from a real sweep's store and
metrics, rendered by a real browser (Debian's chromium, headless).

The sweep is tiny (2 arms x 2 seeds, 15 steps, validation every 5) but real: torchrun
trainers write metrics.jsonl, the orchestrator records them, the report reads the store.
Without /usr/bin/chromium the browser checks are skipped, or failed when
JEPARDY_REQUIRE_BROWSER=1 (CI installs chromium).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
REQUIRE_BROWSER_ENV = "JEPARDY_REQUIRE_BROWSER"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# matplotlib's second colour (the JEPA arm's training curve): only a drawn plot has it.
ORANGE = np.array([0xFF, 0x7F, 0x0E]) / 255


def spec(data: Path) -> str:
    return f"""\
[sweep]
name = "page"
seeds = [1, 2]

[params]
data_dir = "{data / "datasets/embedded_sp1024"}"
tokenizer_path = "{data / "tokenizers/embedded_1024_bpe.model"}"
vocab_size = 1024
d_model = 32
n_layers = 1
n_heads = 4
n_kv_heads = 2
seq_len = 64
train_batch_tokens = 2048
val_max_tokens = 4096
iterations = 15
warmup_steps = 2
log_every = 5
val_every = 5

[axes]
ema = [false]

[lanes.main]
control = {{ jepa_weight = 0.0 }}

[lanes.main.arms.jepa]
jepa_weight = 0.1
"""


@pytest.fixture(scope="module")
def swept(cli, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where `jepardy sweep` ran 4 real runs into results.db."""
    work = tmp_path_factory.mktemp("page")
    data = work / "embedded"
    built = cli.run("data", "build", "--root", data, cwd=work)
    assert built.returncode == 0, built.stderr
    (work / "spec.toml").write_text(spec(data))
    proc = cli.run("sweep", "spec.toml", "--slots", "2", cwd=work, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return work


@pytest.fixture(scope="module")
def page(cli, swept: Path) -> Path:
    proc = cli.run("report", "--format", "html", "--out", "out/report.html", cwd=swept)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr.strip() == "report: out/report.html"
    return swept / "out" / "report.html"


def test_the_page_is_self_contained(page: Path) -> None:
    html = page.read_text()
    # Nothing to fetch: no external stylesheet, script, font or image.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "@import" not in html and "<script" not in html.lower()
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 2  # the forest plot and the lane's training curves
    for encoded in images:
        width, height = png_size(base64.b64decode(encoded))
        assert width > 400 and height > 200, (width, height)


def test_the_page_holds_the_compare_table_and_what_each_arm_changed(page: Path) -> None:
    text = re.sub(r"<[^>]+>", " ", page.read_text())
    text = re.sub(r"\s+", " ", text)
    assert "page / main" in text  # the compare table's title
    assert re.search(r"ema=false jepa 2 \d\.\d{4} ± \d\.\d{4}", text), text  # n, then val_bpb
    # The params table: jepa_weight 0 in the control, 0.1 in the arm, and nothing else.
    assert re.search(r"jepa_weight 0 0\.1", text), text
    assert "Training curves" in text


def test_the_same_report_gives_the_same_page(cli, swept: Path, page: Path) -> None:
    again = cli.run("report", "--format", "html", "--out", "again.html", cwd=swept)
    assert again.returncode == 0, again.stderr
    assert (swept / "again.html").read_text() == page.read_text()


def test_html_needs_an_out_file(cli, swept: Path) -> None:
    line = cli.refused("report", "--format", "html", cwd=swept)
    assert "--out" in line


def test_chromium_renders_tables_and_images(page: Path, tmp_path: Path) -> None:
    browser = require_browser()
    dom = run_browser(browser, tmp_path, "--dump-dom", page)
    rows = re.findall(r"<tr[ >].*?</tr>", dom, re.DOTALL)
    cells = [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)) for row in rows]
    assert any("control" in row and "+0.0000" in row for row in cells), cells
    assert any(re.search(r" jepa 2 \d\.\d{4} ± ", row) for row in cells), cells
    assert any("jepa_weight 0 0.1" in row for row in cells), cells
    assert len(re.findall(r"<img ", dom)) == 2
    shot = tmp_path / "page.png"
    run_browser(browser, tmp_path, f"--screenshot={shot}", page)
    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (4000, 1200)
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 200, "a blank page"
    # The training curves were decoded and drawn: the JEPA arm's orange line is on screen.
    orange = np.abs(pixels - ORANGE).max(axis=-1) < 0.1
    assert orange.sum() > 200, orange.sum()


def require_browser() -> str:
    if Path(CHROMIUM).is_file():
        return CHROMIUM
    reason = f"no chromium at {CHROMIUM} (apt-get install chromium)"
    if os.environ.get(REQUIRE_BROWSER_ENV) == "1":
        pytest.fail(f"{reason}; {REQUIRE_BROWSER_ENV}=1")
    pytest.skip(reason)


def run_browser(browser: str, tmp_path: Path, action: str, page: Path) -> str:
    """Headless chromium on `page` (a file URL; no network, no profile of its own left)."""
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars",
         "--window-size=1200,4000", action, page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])
