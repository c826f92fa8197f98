"""lmlab: tiny transformers on synthetic tasks, and tools over pretrained LLMs.

Importing lmlab does no work: submodules are imported when used.
"""

__version__ = "0.1.0"
