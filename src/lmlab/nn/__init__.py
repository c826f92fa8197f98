"""The tiny transformer and its hook points."""

from lmlab.nn.hooks import HookedRootModule, HookPoint
from lmlab.nn.model import TinyConfig, TinyTransformer

__all__ = ["HookPoint", "HookedRootModule", "TinyConfig", "TinyTransformer"]
