"""lm-eval task files for tests (a helper module, not a test)."""

from pathlib import Path


def task_with_missing_data(tmp_path: Path) -> tuple[Path, Path]:
    """A task dir holding `my_qa.yaml`, whose data file does not exist: (task dir, missing file)."""
    task_dir = tmp_path / "my_tasks"
    task_dir.mkdir()
    missing = tmp_path / "data" / "questions.jsonl"
    (task_dir / "my_qa.yaml").write_text(
        "task: my_qa\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {missing}\ntest_split: test\noutput_type: generate_until\n"
        "doc_to_text: '{{q}}'\ndoc_to_target: '{{a}}'\ngeneration_kwargs: {until: ['\\n']}\n"
        "metric_list:\n  - metric: exact_match\n")
    return task_dir, missing
