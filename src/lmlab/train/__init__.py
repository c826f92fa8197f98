"""One readable training loop, checkpoints and metric logs."""

from lmlab.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from lmlab.train.loop import Batch, TrainConfig, TrainResult, masked_cross_entropy, read_metrics, train

__all__ = [
    "Batch", "CheckpointError", "TrainConfig", "TrainResult", "load_checkpoint", "masked_cross_entropy",
    "read_metrics", "save_checkpoint", "train",
]
