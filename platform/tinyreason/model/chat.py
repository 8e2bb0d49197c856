"""tinyreason's own chat format: ChatML's special tokens, one system prompt, the template.

From-scratch models are born with it, and `model.chat_template: chatml` puts it on a
pretrained model in place of its own (model/templates.py keeps a family's own template
otherwise). One system prompt across stages matters for tiny models: a prompt that changes
between SFT and DPO is a distribution shift that a 5M-parameter model pays for in accuracy.
The template inserts it whenever a conversation brings none (`model.system_prompt` sets another).
"""

SYSTEM_PROMPT = "You are a helpful assistant that reasons step by step and answers concisely."

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

# ChatML, as SmolLM2-Instruct ships it, so a tiny model from scratch and the real
# 135M model read identical prompts. <|endoftext|> separates pre-training documents.
BOS, EOS, PAD = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
CHAT_SPECIAL_TOKENS = (PAD, BOS, EOS)

# `{% generation %}` marks the assistant tokens so TRL's assistant_only_loss and our
# own Ray Data tokenizer can build loss masks from `return_assistant_tokens_mask`.
CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' -%}"
    "{{ '<|im_start|>system\\n" + SYSTEM_PROMPT + "<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|im_start|>assistant\\n' }}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\\n' }}"
    "{%- else -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

