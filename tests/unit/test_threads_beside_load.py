"""bench/threads_beside_load.py's summary, on hand-made runs: each side's median step leaves out
every run's first step (the allocator's warm-up), and the ratios say which side is faster."""


def test_the_summary_drops_first_steps_and_compares_the_sides(bench_script):
    bench = bench_script("threads_beside_load")
    runs = [{"side": "alone_2t", "step_seconds": [9.0, 4.8, 4.6]},
            {"side": "beside_2t", "step_seconds": [30.0, 11.0, 12.0]},
            {"side": "beside_1t", "step_seconds": [20.0, 8.0, 8.5]},
            {"side": "beside_2t", "step_seconds": [30.0, 11.5, 11.5]}]
    assert bench.summarize(runs) == {"step_seconds": {"alone_2t": 4.7, "beside_2t": 11.5, "beside_1t": 8.25},
                                     "load_slows_2t_by": 2.447, "beside_load_1t_speedup_over_2t": 1.394}
    # a side not run is left out, and a ratio that needs it is None
    assert bench.summarize(runs[:1])["beside_load_1t_speedup_over_2t"] is None
