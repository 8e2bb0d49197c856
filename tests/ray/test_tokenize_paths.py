"""A stage's tokenizing pipeline gives the same training rows on Ray Data and in the
driver process (the path small blends take, `data.tokenize_in_driver_max_rows`)."""

import pytest

from tinyreason.config.experiment import StageConfig
from tinyreason.data import synthetic
from tinyreason.data import tokenize as T
from tinyreason.model.tokenizer import add_think_tokens, prepare_chat_tokenizer, train_bpe
from tinyreason.train import registry


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    tok = prepare_chat_tokenizer(train_bpe([r["text"] for r in synthetic.pretrain_rows(400, 0)], 400, out))
    add_think_tokens(tok)
    tok.save_pretrained(out)
    return str(out)


def _stage(kind: str, **data) -> StageConfig:
    return StageConfig.model_validate({"name": kind, "kind": kind,
                                       "data": {"blend": {"sources": [{"synthetic": "chat"}]}, **data}})


def _columns(rows: list[dict]) -> dict[str, list]:
    return {k: [r[k] for r in rows] for k in rows[0]}


def _plain(rows) -> list[dict]:
    return [{k: T._plain(v) for k, v in r.items()} for r in rows]


@pytest.mark.parametrize("kind, rows, data", [
    ("sft", synthetic.chat_rows(300, 3), {"max_length": 128}),  # packed: BFD within each 2048-row batch
    ("sft", synthetic.chat_rows(300, 3), {"max_length": 128, "packing": False}),
    ("pretrain", synthetic.pretrain_rows(700, 3), {"max_length": 64}),  # spans two 512-document batches
    ("dpo", synthetic.preference_rows(120, 3), {"max_length": 128, "max_prompt_length": 48}),
])
def test_driver_and_ray_data_make_the_same_rows(ray_local, tok_dir, kind, rows, data):
    import ray.data

    steps = registry.get(kind).tokenize_steps(tok_dir, _stage(kind, **data))
    # one input block, so Ray Data's batches start at the same rows as the driver's
    on_ray = _plain(T.on_ray(ray.data.from_items(rows, override_num_blocks=1), steps).take_all())
    in_driver = _plain(_rows_of(T.in_process(_columns(rows), steps)))
    assert len(in_driver) > 10
    assert in_driver == on_ray


def _rows_of(columns: dict[str, list]) -> list[dict]:
    n = len(next(iter(columns.values())))
    return [{k: v[i] for k, v in columns.items()} for i in range(n)]
