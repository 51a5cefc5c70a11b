"""One cleaning recipe from prep to every inference path (issue 19, section 1).

Two tiny models are trained through the real CLI (prep, then train): ``web`` from data prepped
with ``--remove-urls --remove-html``, ``plain`` without. The web model must score a text with a
tag and a URL exactly like the text without them in analyze (torch and its ONNX export, sentence
and document mode), a real ``finsight serve`` process, the registry's pyfunc and a real
tritonserver; the plain model must not strip them.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import sys
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import HEADLINES, PHRASEBANK, REPO_ROOT
from serve_helpers import LiveServer, metric

from finsight.data.recipe import DEFAULT_RECIPE, CleaningRecipe, clean_text
from finsight.labels import LABELS

DIRTY = "Profit rose <b>12%</b> https://x.co/a"
CLEAN = "Profit rose 12%"
PROBS = [f"p_{label}" for label in LABELS]
WEB = CleaningRecipe(remove_urls=True, remove_html=True)
TINY_CONFIG = REPO_ROOT / "configs" / "tiny.yaml"


def _invoke(*args):
    from typer.testing import CliRunner

    from finsight.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def _ok(result):
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def models(tmp_path_factory, one_thread):
    """prep + train once per recipe (one epoch: the weights only need to tell texts apart),
    and an ONNX export of the web model made by `finsight export`."""
    root = tmp_path_factory.mktemp("cleaning")
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.upper().startswith("FINSIGHT_"):
                mp.delenv(name)
        mp.chdir(root)
        base = ["-c", TINY_CONFIG, "--set", f"workdir={root / 'work'}", "--set", "train.max_epochs=1",
                "--set", "predict.num_threads=1"]
        for name, flags in (("web", ["--remove-urls", "--remove-html"]), ("plain", [])):
            _ok(_invoke(*base, "prep", HEADLINES, "--out", root / f"data-{name}", *flags))
            _ok(_invoke(*base, "train", "--data", root / f"data-{name}", "--out", root / name))
            out[name] = root / name / "model"
        export = json.loads(_ok(_invoke(*base, "export", out["web"], "--format", "onnx", "--json")).stdout)
        out["web-onnx"] = Path(export["path"])
    out["root"], out["base"] = root, base
    return out


def _manifest(path: Path) -> dict:
    return json.loads((path / "finsight.json").read_text())


# ---------------------------------------------------------------- the recipe and its function


def test_the_recipe_is_recorded_from_the_data_card_and_carried_by_the_export(models):
    card = json.loads((models["root"] / "data-web" / "data_card.json").read_text())
    assert card["cleaning"] == {"unicode": "NFKC", "whitespace": "collapsed", **WEB.as_dict()}
    assert _manifest(models["web"])["cleaning"] == WEB.as_dict()
    assert _manifest(models["plain"])["cleaning"] == DEFAULT_RECIPE.as_dict()
    assert _manifest(models["web-onnx"])["cleaning"] == WEB.as_dict()
    from finsight.model import resolve_artifact

    for name, recipe in (("web", WEB), ("web-onnx", WEB), ("plain", DEFAULT_RECIPE)):
        cleaning = resolve_artifact(str(models[name])).cleaning
        assert cleaning == recipe and not cleaning.assumed and cleaning.provenance == "recorded"


def test_a_model_without_a_recipe_assumes_the_default_and_a_bad_one_is_refused(tiny_model_dir, tmp_path):
    from finsight.errors import ModelError
    from finsight.model import resolve_artifact

    cleaning = resolve_artifact(str(tiny_model_dir)).cleaning  # no finsight.json at all
    assert cleaning == DEFAULT_RECIPE and cleaning.assumed
    assert cleaning.provenance == "default (no recipe recorded)"
    shutil.copytree(tiny_model_dir, tmp_path / "m")
    (tmp_path / "m" / "finsight.json").write_text(json.dumps({"kind": "model", "cleaning": {"lowercase": True}}))
    with pytest.raises(ModelError, match=r"finsight.json cleaning: unknown cleaning steps \['lowercase'\]"):
        resolve_artifact(str(tmp_path / "m")).cleaning


def _corpus() -> list[str]:
    texts = ["Profit rose <b>12%</b> https://x.co/a", "<p>Profit &amp; sales up</p> see www.x.com ﬁnal",
             "&lt;b&gt;bold&lt;/b&gt; and &amp;amp; twice", "zero\u200bwidth\u00adsoft \ufeffbom",
             "e\u200d\u0301 accent", "full\uff1cwidth\uff1e tag", "tabs\tand\r\nlines\n\nhere",
             "&#8203;entity zero width &nbsp;space", "EPS < 1 and > 2", "", "   ", "ＡＢＣ１２３"]
    if PHRASEBANK.is_dir():
        lines = (PHRASEBANK / "Sentences_50Agree.txt").read_text(encoding="latin-1").splitlines()
        texts += [line.rsplit("@", 1)[0] for line in lines]
    return texts


def _previous_clean_texts(texts: pd.Series, recipe: CleaningRecipe) -> pd.Series:
    """prep's vectorised cleaning before the recipe (issue 18), kept to prove prep's output
    did not change on real text."""
    import html

    text = texts.astype(str)
    if recipe.remove_html:
        text = text.str.replace(r"<[^<>]{1,500}>", " ", regex=True).map(html.unescape)
    text = text.str.normalize("NFKC").str.replace("[\u00ad\u180e\u200b-\u200f\u2060-\u2064\ufeff]", "", regex=True)
    if recipe.remove_urls:
        text = text.str.replace(r"(?:https?://|ftp://|www\.)\S+", " ", regex=True)
    return text.str.replace(r"\s+", " ", regex=True).str.strip()


@pytest.mark.parametrize("recipe", [DEFAULT_RECIPE, WEB], ids=["default", "web"])
def test_prep_cleans_with_the_one_function_and_its_output_is_unchanged(recipe):
    from finsight.data.clean import clean_texts

    texts = pd.Series(_corpus(), dtype=object)
    cleaned = clean_texts(texts, recipe)
    assert cleaned.tolist() == [clean_text(t, recipe) for t in texts]
    # PhraseBank (when present) and ordinary text: as before. Only the nested entities and the
    # zero-width joiner before an accent clean further now (so that cleaning is idempotent).
    previous = _previous_clean_texts(texts, recipe)
    changed = [t for t, a, b in zip(texts, cleaned, previous) if a != b]
    assert set(changed) <= {"&lt;b&gt;bold&lt;/b&gt; and &amp;amp; twice", "e\u200d\u0301 accent",
                            "full\uff1cwidth\uff1e tag"}, changed
    assert all(clean_text(c, recipe) == c for c in cleaned)  # cleaning a cleaned text: no change
    assert clean_text(DIRTY, WEB) == CLEAN and clean_text(DIRTY, DEFAULT_RECIPE) == DIRTY


def test_the_recipe_module_imports_only_the_standard_library():
    """It ships into the Triton tokenizer model, whose Python has only numpy and tokenizers."""
    source = (REPO_ROOT / "finsight" / "data" / "recipe.py").read_text()
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    assert names <= set(sys.stdlib_module_names) | {"__future__"}, names


def test_export_validation_cleans_as_the_predictors_do(models):
    from finsight.config import load_settings
    from finsight.export.source import load_source

    source = load_source(models["web"], load_settings())
    dirty, clean = source.encode([DIRTY]), source.encode([CLEAN])
    assert all(np.array_equal(dirty[k], clean[k]) for k in clean)


# ---------------------------------------------------------------- analyze


def _analyze(models, model, rows, *extra, sets=()) -> tuple[pd.DataFrame, dict]:
    root = models["root"]
    src = root / "in.csv"
    pd.DataFrame({"id": range(len(rows)), "text": rows}).to_csv(src, index=False)
    out = root / f"out-{len(list(root.glob('out-*')))}.csv"
    sets = [arg for item in sets for arg in ("--set", item)]
    result = _ok(_invoke(*models["base"], *sets, "analyze", src, "--model", model, "--out", out, "--json",
                         *extra))
    return pd.read_csv(out), json.loads(result.stdout)


@pytest.mark.parametrize("ref,backend", [("web", "torch"), ("web-onnx", "onnx")])
def test_analyze_scores_the_dirty_text_like_the_clean_one(models, ref, backend):
    scored, summary = _analyze(models, models[ref], [DIRTY, CLEAN], "--backend", backend)
    np.testing.assert_array_equal(scored.loc[0, PROBS].to_numpy(float), scored.loc[1, PROBS].to_numpy(float))
    assert summary["cleaning"] == {"provenance": "recorded", "recorded": True, "recipe": WEB.as_dict()}


def test_a_model_trained_without_the_flags_does_not_strip_them(models):
    from finsight.config import load_settings
    from finsight.predict import load_predictor

    predictor = load_predictor(str(models["plain"]), load_settings(), backend="torch")
    assert predictor.cleaning == DEFAULT_RECIPE and predictor.clean([DIRTY]) == [DIRTY]
    scored, summary = _analyze(models, models["plain"], [DIRTY, CLEAN], "--backend", "torch")
    assert not np.allclose(scored.loc[0, PROBS].to_numpy(float), scored.loc[1, PROBS].to_numpy(float))
    assert summary["cleaning"]["recipe"] == DEFAULT_RECIPE.as_dict()


def test_analyze_says_when_it_assumes_the_default(models, tiny_model_dir):
    src = models["root"] / "one.csv"
    pd.DataFrame({"text": [CLEAN]}).to_csv(src, index=False)
    result = _ok(_invoke(*models["base"], "analyze", src, "--model", tiny_model_dir, "--backend", "torch",
                         "--out", models["root"] / "one.out.csv"))
    assert "default (no recipe recorded)" in result.stdout
    result = _ok(_invoke(*models["base"], "analyze", src, "--model", models["web"], "--backend", "torch",
                         "--out", models["root"] / "one.out.csv"))
    assert "recorded (removes urls, html)" in result.stdout


def test_document_mode_cleans_line_by_line_and_still_splits(models):
    """Blank lines still split paragraphs, tags between sentences split them, a line that is only
    a URL is no sentence."""
    dirty = "<p>Profit rose 12%.</p><p>Sales fell sharply.</p>\n\nhttps://x.co/a\n\nThe outlook is <i>stable</i>."
    clean = "Profit rose 12%. Sales fell sharply.\n\nThe outlook is stable."
    scored, summary = _analyze(models, models["web"], [dirty, clean], "--backend", "torch", "--mode", "document")
    assert scored["n_sentences"].tolist() == [3, 3]
    np.testing.assert_array_equal(scored.loc[0, PROBS].to_numpy(float), scored.loc[1, PROBS].to_numpy(float))
    assert summary["sentences"] == 6


# ---------------------------------------------------------------- serve


def test_serve_cleans_reports_the_recipe_and_caches_the_cleaned_text(models, tmp_path):
    server = LiveServer(models["web"], tmp_path / "serve.log", "predict.num_threads=1")
    try:
        server.wait_ready()
        info = httpx.get(f"{server.url}/v1/model", timeout=10).json()
        assert info["cleaning"] == {"provenance": "recorded", "recorded": True, "recipe": WEB.as_dict()}
        first = httpx.post(f"{server.url}/v1/predict/batch", json={"texts": [DIRTY, CLEAN]}, timeout=30).json()
        dirty, clean = first["results"]
        assert dirty["probabilities"] == clean["probabilities"] and not dirty["cached"]
        before = metric(httpx.get(f"{server.url}/metrics", timeout=10).text, "finsight_cache_hits_total")
        other = "Profit   rose <i>12%</i>  www.example.com/x"  # cleans to the same string too
        again = httpx.post(f"{server.url}/v1/predict", json={"text": other}, timeout=30).json()
        assert again["cached"] and again["probabilities"] == clean["probabilities"]
        after = metric(httpx.get(f"{server.url}/metrics", timeout=10).text, "finsight_cache_hits_total")
        assert after == before + 1
    finally:
        server.stop()


def test_serve_says_when_it_assumes_the_default(tiny_model_dir):
    from litestar.testing import TestClient
    from serve_helpers import serve_settings

    from finsight.predict import load_predictor
    from finsight.serve import create_app

    settings = serve_settings(tiny_model_dir)
    with TestClient(create_app(settings, load_predictor(None, settings))) as client:
        cleaning = client.get("/v1/model").json()["cleaning"]
    assert cleaning == {"provenance": "default (no recipe recorded)", "recorded": False,
                        "recipe": DEFAULT_RECIPE.as_dict()}


# ---------------------------------------------------------------- the registry's pyfunc


def test_a_registered_version_keeps_the_recipe_and_its_pyfunc_applies_it(models, monkeypatch):
    import mlflow

    from finsight.config import load_settings
    from finsight.model import resolve_artifact
    from finsight.publish import register_model

    settings = load_settings(overrides=[f"workdir={models['root'] / 'work'}", "registry.model_name=clean",
                                        "predict.num_threads=1"])
    version = register_model(models["web-onnx"], settings).version
    artifact = resolve_artifact(f"models:/clean/{version}", settings)  # through the registry cache
    assert artifact.cleaning == WEB and not artifact.cleaning.assumed
    monkeypatch.setenv("MLFLOW_TRACKING_URI", settings.tracking_uri())
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", settings.tracking_uri())
    loaded = mlflow.pyfunc.load_model(f"models:/clean/{version}", model_config={"num_threads": 1})
    scored = loaded.predict([DIRTY, CLEAN])
    np.testing.assert_array_equal(scored.loc[0, PROBS].to_numpy(float), scored.loc[1, PROBS].to_numpy(float))
    assert (scored["error"] == "").all()


# ---------------------------------------------------------------- a real tritonserver


@pytest.fixture(scope="module")
def triton(models):
    from finsight.config import load_settings
    from finsight.triton.server import TritonServer

    repo = models["root"] / "repo"
    _ok(_invoke("triton", "build", models["web-onnx"], "--repo", repo, "--classifier-backend", "python"))
    with TritonServer(repo, load_settings()) as server:
        yield {"repo": repo, "server": server}


def test_the_triton_tokenizer_model_cleans_with_the_shipped_function(models, triton):
    import tritonclient.http as httpclient

    from finsight.triton.repository import shipped_modules

    tokenizer_dir = triton["repo"] / "finsight_tokenizer" / "1"
    shipped = shipped_modules()
    assert "finsight/data/recipe.py" in shipped
    for relative, module in shipped.items():
        assert (tokenizer_dir / relative).read_bytes() == module.read_bytes(), relative
    config = (triton["repo"] / "finsight_tokenizer" / "config.pbtxt").read_text()
    assert '"remove_html\\": true' in config and '"remove_urls\\": true' in config
    # Raw text straight to the ensemble (no finsight client): the server cleans it.
    client = httpclient.InferenceServerClient(triton["server"].http_url)
    item = httpclient.InferInput("TEXT", [2, 1], "BYTES")
    item.set_data_from_numpy(np.array([[DIRTY.encode()], [CLEAN.encode()]], dtype=object))
    probs = client.infer("finsight", [item]).as_numpy("probabilities")
    client.close()
    np.testing.assert_array_equal(probs[0], probs[1])


def test_analyze_through_triton_scores_the_dirty_text_like_the_clean_one(models, triton):
    scored, summary = _analyze(models, models["web-onnx"], [DIRTY, CLEAN], "--backend", "triton",
                               sets=[f"triton.url={triton['server'].http_url}"])
    np.testing.assert_array_equal(scored.loc[0, PROBS].to_numpy(float), scored.loc[1, PROBS].to_numpy(float))
    assert summary["backend"] == "triton" and summary["cleaning"]["recipe"] == WEB.as_dict()


def test_a_triton_server_that_cleans_differently_is_refused(models, triton):
    from finsight.config import load_settings
    from finsight.errors import BackendError
    from finsight.predict import load_predictor

    settings = load_settings(flags={"triton.url": triton["server"].http_url})
    with pytest.raises(BackendError, match="cleans texts with"):
        load_predictor(str(models["plain"]), settings, backend="triton")
