"""What training and evaluation keep off the terminal unless -v (through finsight.quiet)."""

# Lightning's and transformers' loggers, and warnings each harmless for a finsight run.
QUIET_LOGGERS = ("lightning.pytorch", "lightning.fabric", "transformers")
QUIET_WARNINGS = (
    r".*does not have many workers.*", r".*Checkpoint directory .* exists and is not empty.*",
    r".*smaller than the logging interval.*", r".*`training_step` returned `None`.*",
    r".*Trying to infer the `batch_size`.*", r".*is an invalid `ckpt_path`.*",
    r".*Found keys that are in the model state dict but not in the checkpoint.*",
    r".*LeafSpec.*", r".*module\(s\) in eval mode.*",
    r".*when logging on epoch level in distributed setting.*",  # epoch metrics are gathered first
    r".*all_gather is deprecated.*",
)
