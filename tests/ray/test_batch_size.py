"""A batch counted in examples, on a real local Ray with 2 workers: with
`data.packed_batch: examples` a packed stage takes the steps of its unpacked recipe,
per_device_train_batch_size chat rows per worker and step, not that many packed bins."""

import pytest

ROWS, PER_DEVICE, WORKERS = 300, 8, 2


def test_a_batch_of_examples_keeps_the_unpacked_step_count(ray_local, run_micro_sft):
    stage = run_micro_sft("examples", data={"blend": {"sources": [{"synthetic": "chat", "entries": ROWS}]},
                                            "max_length": 256, "packed_batch": "examples"},
                          trainer={"per_device_train_batch_size": PER_DEVICE, "logging_steps": 5})
    rows, bins, steps = stage.manifest["blend"]["rows"], stage.manifest["sequences"], stage.manifest["summary"]["steps"]
    assert bins < rows / 2  # packing put several chat rows in each bin
    assert steps == pytest.approx(rows / (PER_DEVICE * WORKERS), abs=2)  # as unpacked; bins would give ~bins/8
