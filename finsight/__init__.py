"""finsight: financial sentiment analysis around FinBERT."""

__version__ = "0.1.0"
