"""Tokenizers for alm: train (byte-level BPE or Unigram, lossless) and use (`Tokenizer`)."""

from alm.tokenizer.tokenizer import Tokenizer
from alm.tokenizer.train import train_tokenizer

__all__ = ["Tokenizer", "train_tokenizer"]
