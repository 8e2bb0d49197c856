"""tinyreason: a Ray-distributed platform that teaches tiny language models to reason.

A curriculum is an ordered list of stages (pretrain -> sft -> reasoning_sft -> dpo);
each stage reads a Ray Data blend, trains under Ray Train + DeepSpeed with a TRL
trainer, and exports a Hugging Face model dir that the next stage starts from.
"""

__version__ = "0.1.0"
