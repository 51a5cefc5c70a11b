"""Test kit: tiny models built locally, sample data, an isolated environment.

Nothing here touches the network: the tiny BERT's WordPiece vocab is trained on
examples/headlines.csv with `tokenizers` and the model is saved as a normal HF directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Offline from the start: session-scoped fixtures run before the autouse fixture below, and
# huggingface_hub reads these when it is first imported.
for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ[_name] = "1"

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "examples"
HEADLINES = EXAMPLES / "headlines.csv"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
PHRASEBANK = SHARED_DATA / "financial_phrasebank"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Each test runs in its own cwd, with no FINSIGHT_* env and no hub access."""
    for name in list(os.environ):
        if name.upper().startswith("FINSIGHT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def one_thread():
    """The tiny model gains nothing from a second thread, and on a busy machine two spinning
    OpenMP threads make it ten times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def headlines():
    import pandas as pd

    return pd.read_csv(HEADLINES)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, headlines) -> Path:
    """An untrained 2-layer, hidden-32 BERT classifier (negative/neutral/positive)."""
    from finsight.train.tiny import build_tiny_model

    return build_tiny_model(headlines["text"].tolist(), tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def trained_tiny_model_dir(tmp_path_factory, headlines, tiny_model_dir) -> Path:
    """The tiny model after a few seconds of plain-torch training on the headlines.

    Its predictions are confident and varied, so label agreement between backends is a
    real check rather than a tie-break on near-uniform logits.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    # One thread: a hidden-32 model gains nothing from more, and on a loaded 2-core box a
    # second thread made this fixture ~10x slower.
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    label2id = model.config.label2id
    enc = tokenizer(headlines["text"].tolist(), padding=True, truncation=True, max_length=64,
                    return_tensors="pt")
    target = torch.tensor([label2id[label] for label in headlines["label"]])
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(30):
        for idx in torch.randperm(len(target)).split(32):
            loss = model(input_ids=enc["input_ids"][idx], attention_mask=enc["attention_mask"][idx],
                         token_type_ids=enc["token_type_ids"][idx], labels=target[idx]).loss
            loss.backward()
            optim.step()
            optim.zero_grad()
    model.eval()
    out = tmp_path_factory.mktemp("tiny-trained") / "model"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture
def phrasebank() -> Path:
    if not PHRASEBANK.is_dir():
        pytest.skip(f"Financial PhraseBank not found at {PHRASEBANK} (../shared/data is absent)")
    return PHRASEBANK


@pytest.fixture
def cli():
    """Invoke the finsight CLI in-process; returns click's Result (stdout and stderr apart)."""
    from typer.testing import CliRunner

    from finsight.cli import app

    runner = CliRunner()

    def invoke(*args: str, env: dict | None = None):
        return runner.invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)

    return invoke
