"""The chat format shared by every stage: special tokens, one system prompt, the template.

One system prompt across stages matters for tiny models: a prompt that changes
between SFT and DPO is a distribution shift that a 5M-parameter model pays for
in accuracy.
"""

SYSTEM_PROMPT = "You are a helpful assistant that reasons step by step and answers concisely."

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
