"""MLflow tracking (and, later, the model registry). mlflow is imported only when used."""
