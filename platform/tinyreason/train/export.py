"""What a finished worker leaves behind: the stage's model as a Hugging Face dir."""

from __future__ import annotations

from tinyreason.model.plain_jinja import PLAIN_TEMPLATE, write_plain_template
from tinyreason.train import lora
from tinyreason.train.job import StageJob
from tinyreason.train.worker import is_rank_zero


def export_model(trainer, tok, job: StageJob) -> None:
    """Save the stage's model as a Hugging Face dir (safetensors + tokenizer + template, and the
    template in plain Jinja2 as `chat_template.plain.jinja` for llama.cpp and servers, checked to
    render as transformers does), then publish it and the logs to storage, where the driver and the
    next stage read them.

    Every rank calls this: under ZeRO-3 the weights are gathered collectively. A LoRA stage
    exports its adapter merged into the weights, and the adapter beside them (train/lora.py).
    """
    if job.stage.peft is not None:
        lora.export_merged(trainer, tok, job)
    else:
        trainer.save_model(job.export_dir)  # safe_serialization is the transformers 5 default
    if is_rank_zero():
        # training_args.bin is a pickle; the manifest holds the same settings as JSON
        (job.output.model_dir / "training_args.bin").unlink(missing_ok=True)
        tok.save_pretrained(job.export_dir)
        if tok.chat_template:
            write_plain_template(tok, job.output.model_dir / PLAIN_TEMPLATE)
        trainer.model.generation_config.save_pretrained(job.export_dir)
        job.output.publish_training()
