"""bench/final_checkpoint.py's summary, on hand-made runs: medians per side, the checkpoint left,
and a loss that differs between the sides is reported, not averaged away."""


def _run(at_end, seconds, size, loss):
    return {"at_end": at_end, "stages": {"sft": {"train_seconds": seconds, "checkpoint_bytes": size, "loss_last": loss}}}


def test_the_summary_compares_the_sides_and_flags_a_changed_loss(bench_script):
    bench = bench_script("final_checkpoint")
    runs = [_run(False, 24.0, 0, 0.5), _run(True, 60.0, 2900, 0.5), _run(True, 54.0, 2900, 0.5),
            _run(False, 22.0, 0, 0.5)]
    assert bench.summarize(runs)["sft"] == {"train_seconds_off": 23.0, "train_seconds_on": 57.0,
                                            "speedup_off_over_on": 2.478, "checkpoint_bytes_off": 0,
                                            "checkpoint_bytes_on": 2900, "same_losses": True}
    runs[1] = _run(True, 60.0, 2900, 0.51)
    assert bench.summarize(runs)["sft"]["same_losses"] is False
