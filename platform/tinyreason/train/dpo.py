"""Stage kind `dpo`: preference alignment on chosen/rejected pairs (paper stage 3).

The paper's run: `loss_type: apo_zero`, `beta: 0.1`, lr 1e-5, max grad norm 0.2,
`cosine_with_min_lr` (min_lr_rate 0.1), max prompt length 1048, max length 2048.
Rows are tokenized on Ray Data into prompt/chosen/rejected ids (the prompt cut
from the left to `data.max_prompt_length`, which TRL 1.x no longer does itself).
"""

from __future__ import annotations

from functools import partial

from tinyreason.config import StageConfig
from tinyreason.train import common
from tinyreason.train.sft import cached_tokenizer

KIND = "dpo"


def prepare_tokenizer(tok, stage: StageConfig):
    from tinyreason.model.tokenizer import prepare_chat_tokenizer

    return prepare_chat_tokenizer(tok)


def tokenize_steps(tokenizer_dir: str, stage: StageConfig) -> list:
    from tinyreason.data.tokenize import Step

    return [Step(partial(_tokenize_preference, tokenizer_dir=tokenizer_dir, max_length=stage.data.max_length,
                         max_prompt_length=stage.data.max_prompt_length), 256)]


def _tokenize_preference(batch, tokenizer_dir: str, max_length: int, max_prompt_length: int | None):
    from tinyreason.data.tokenize import tokenize_preference_batch

    return tokenize_preference_batch(batch, cached_tokenizer(tokenizer_dir), max_length, max_prompt_length)


def trainer_class():
    """TRL's DPOTrainer, minus its own tokenization: our rows arrive tokenized."""
    from trl import DPOTrainer

    class PretokenizedDPOTrainer(DPOTrainer):
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            if "prompt_ids" in dataset.column_names:
                return dataset
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

        def _precompute_ref_logps(self, dataset, name, batch_size):
            # rows that arrive with shared reference log-probs (a sweep's cache) keep them
            if "ref_chosen_logps" in dataset.column_names:
                return dataset
            return super()._precompute_ref_logps(dataset, name, batch_size)

    return PretokenizedDPOTrainer


def reference_logps(model_dir: str, rows: list[dict], pad_token_id: int, max_length: int,
                    batch_size: int = 16, trust_remote_code: bool = False) -> list[tuple[float, float]]:
    """Sum of the reference model's log-probs over each chosen and rejected completion.

    Batched exactly as TRL's DataCollatorForPreference batches training rows, so the
    values equal what DPOTrainer's own precompute pass would produce for these rows.
    """
    import torch
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    from tinyreason.model.presets import load_model

    model = load_model(model_dir, trust_remote_code).eval()
    collate = DataCollatorForPreference(pad_token_id=pad_token_id, max_length=max_length)
    out = []
    for i in range(0, len(rows), batch_size):
        batch = collate(rows[i:i + batch_size])
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        targets = batch["input_ids"][:, 1:]
        mask = batch["completion_mask"][:, 1:].float()
        token_logps = torch.log_softmax(logits.float(), -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        sums = (token_logps * mask).sum(-1)
        chosen, rejected = sums.chunk(2)
        out += list(zip(chosen.tolist(), rejected.tolist()))
    return out


def train_loop_per_worker(config: dict) -> None:
    """model -> data -> trainer -> train -> save, on one Ray Train worker."""
    job, timeline, precision = common.begin_worker(config)
    stage = job.stage
    from trl import DPOConfig

    from tinyreason.model.presets import load_model

    timeline.mark("imports")

    # model: the policy and a frozen reference, both the parent stage's export
    tok, model = common.load_tokenizer_and_model(job)
    settings = stage.trainer.to_trl()
    ref_model = None
    if not settings.get("precompute_ref_log_probs"):
        ref_model = load_model(job.local(job.parent_model), job.trust_remote_code, job.attn_implementation)
    timeline.mark("model_load")

    # data
    train = common.load_shard()
    timeline.mark("data_shard")

    # trainer
    args = common.trl_arguments(DPOConfig, job, precision, max_length=stage.data.max_length)
    trainer = trainer_class()(
        model=model, ref_model=ref_model, args=args, train_dataset=train, processing_class=tok,
        callbacks=[common.make_report_callback(job, timeline)],
    )
    common.use_local_shard(trainer)

    # train
    trainer.train(resume_from_checkpoint=common.resume_checkpoint(config.get("resume_from")))

    # save
    common.export_model(trainer, tok, job)
