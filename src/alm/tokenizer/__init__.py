"""Tokenizers for alm: train (byte-level BPE or Unigram, lossless) and use (`Tokenizer`).

This layer knows nothing of the data pipeline: `alm.data` decides when a tokenizer must be (re)trained.
"""

from alm.tokenizer.config import MIN_VOCAB_SIZE, TokenizerConfig
from alm.tokenizer.tokenizer import Tokenizer
from alm.tokenizer.train import train_tokenizer

__all__ = ["MIN_VOCAB_SIZE", "Tokenizer", "TokenizerConfig", "train_tokenizer"]
