"""Score a large table on Spark with the registered model: no finsight code of its own on the cluster.

    spark-submit deploy/spark/score_table.py --input s3://bucket/news.parquet \
        --output s3://bucket/news_scored.parquet --model models:/finsight-sentiment@champion

The executors load the MLflow pyfunc that `finsight register` logged (it carries its own
pip requirements); each partition is scored in batches by the same predictor `analyze` uses.
"""

from __future__ import annotations

import argparse

import mlflow.pyfunc
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

# Every column the pyfunc returns (publish/pyfunc.py OUTPUT_COLUMNS), its `error` included: a
# row with an empty text keeps its reason.
RESULT = ("label string, confidence float, p_negative float, p_neutral float, "
          "p_positive float, sentiment float, error string")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="Parquet table with a text column")
    parser.add_argument("--output", required=True, help="where the scored table goes (Parquet)")
    parser.add_argument("--model", default="models:/finsight-sentiment@champion")
    parser.add_argument("--text-column", default="text")
    args = parser.parse_args()

    spark = SparkSession.builder.appName("finsight-score").getOrCreate()
    score = mlflow.pyfunc.spark_udf(spark, args.model, result_type=RESULT, env_manager="local")
    table = spark.read.parquet(args.input)
    scored = table.withColumn("score", score(F.col(args.text_column))).select("*", "score.*").drop("score")
    scored.write.mode("overwrite").parquet(args.output)


if __name__ == "__main__":
    main()
