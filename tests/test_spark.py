"""The registered pyfunc on Spark: `mlflow.pyfunc.spark_udf` in a local[1] session scores a
DataFrame with no finsight code of its own and gets the labels of `load_predictor`.

Slow (a JVM start, ~60-90 s on 2 busy cores): `make test` skips it, `.ci/run` runs it.
"""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest

NAME = "spark-sentiment"


@pytest.mark.slow
def test_spark_udf_scores_like_load_predictor(tmp_path, trained_tiny_model_dir, headlines, monkeypatch):
    if shutil.which("java") is None:
        pytest.fail("Spark needs Java: install a JRE (.ci/run installs openjdk-17-jre-headless)")
    import mlflow
    from pyspark.sql import SparkSession

    from finsight.config import load_settings
    from finsight.predict import load_predictor
    from finsight.predict.scores import PROB_COLUMNS
    from finsight.publish import register_model

    settings = load_settings(overrides=[f"workdir={tmp_path / 'work'}", f"registry.model_name={NAME}",
                                        "predict.num_threads=1"])
    model = tmp_path / "model"
    shutil.copytree(trained_tiny_model_dir, model)
    register_model(model, settings, aliases=["champion"])

    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", settings.tracking_uri())
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    texts = headlines["text"].head(48).tolist() + [""]
    spark = (SparkSession.builder.master("local[1]").appName("finsight-test")
             .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "1")
             .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
             .getOrCreate())
    try:
        score = mlflow.pyfunc.spark_udf(spark, f"models:/{NAME}@champion", env_manager="local",
                                        model_config={"num_threads": 1})
        frame = spark.createDataFrame([(i, t) for i, t in enumerate(texts)], ["id", "text"])
        scored = frame.withColumn("s", score("text")).select("id", "s.*").orderBy("id").toPandas()
    finally:
        spark.stop()

    probs = load_predictor(str(model), settings).predict(texts[:-1])
    labels = np.array(["negative", "neutral", "positive"])[probs.argmax(axis=1)]
    assert scored["id"].tolist() == list(range(len(texts)))
    assert scored["label"].iloc[:-1].tolist() == labels.tolist()
    np.testing.assert_allclose(scored[list(PROB_COLUMNS)].iloc[:-1].to_numpy(float), probs, atol=1e-5)
    assert scored["label"].iloc[-1] == "" and scored["error"].iloc[-1] == "empty text"
    assert (scored["error"].iloc[:-1] == "").all() and np.isnan(scored["sentiment"].iloc[-1])
    assert not os.path.exists(tmp_path / "mlruns")
