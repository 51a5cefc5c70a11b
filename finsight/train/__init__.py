"""Fine-tuning (Lightning) and evaluation."""
