"""The items of a user's lm-eval tasks, read for decontamination as lm-eval reads the tasks:
`include:` merged, groups and tags expanded, the scored split's local file (json, csv,
parquet), the fields the prompt shows; what cannot be read says why."""

import json

import pyarrow as pa
import pyarrow.parquet as pq

from tinyreason.eval.task_data import row_texts, task_items, template_fields

Q1 = "A farmer plants 12 rows of 9 cabbages and 3 rows die in the frost; how many cabbages are left?"
Q2 = "Which river flows through the city of Vienna on its way to the Black Sea?"


def _write(path, text):
    path.write_text(text)
    return path


def _tasks(tmp_path):
    d = tmp_path / "tasks"
    d.mkdir()
    data = tmp_path / "data"
    data.mkdir()
    _write(data / "qa.csv", f'q,a\n"{Q1}",81\n')
    pq.write_table(pa.Table.from_pylist([{"problem": Q2, "solution": "The Danube flows through Vienna."}]),
                   data / "geo.parquet")
    _write(data / "split.jsonl", json.dumps({"question": "Train-only question that is never scored here."}) + "\n")
    _write(d / "_base.yaml", "output_type: generate_until\ntest_split: test\ndoc_to_target: '{{a}}'\n"
                             "metric_list:\n  - metric: exact_match\n")
    _write(d / "csv_qa.yaml", f"include: _base.yaml\ntask: csv_qa\ntag: [my_tag]\ndataset_path: csv\n"
                              f"dataset_kwargs:\n  data_files:\n    test: {data / 'qa.csv'}\n"
                              "doc_to_text: 'Q: {{q}}\\nA:'\n")
    _write(d / "pq_geo.yaml", "include: _base.yaml\ntask: pq_geo\ndataset_path: parquet\n"
                              f"dataset_kwargs:\n  data_files: {data / 'geo.parquet'}\ntest_split: train\n"
                              "doc_to_text: problem\ndoc_to_target: '{{solution}}'\n")
    _write(d / "no_test.yaml", "include: _base.yaml\ntask: no_test\ndataset_path: json\n"
                               f"dataset_kwargs:\n  data_files:\n    train: {data / 'split.jsonl'}\n")
    _write(d / "gone.yaml", "include: _base.yaml\ntask: gone\ndataset_path: json\n"
                            f"dataset_kwargs:\n  data_files:\n    test: {data / 'missing.jsonl'}\n")
    _write(d / "_group.yaml", "group: my_group\ntask: [csv_qa, pq_geo]\n")
    return d


def test_templates_name_the_fields_the_prompt_shows():
    assert template_fields("Question: {{question}}\nAnswer:") == ["question"]
    assert template_fields("{{choices.label.index(answerKey)}}") == ["answerKey", "choices"]
    assert template_fields("problem") == ["problem"]  # a bare column name
    assert template_fields(None) == []
    assert row_texts({"q": "x y", "n": 3}, ["q"]) == ["x y"]
    assert row_texts({"q": 3, "other": "z w"}, ["q"]) == ["z w"]  # no named string field: every string field


def test_a_group_a_tag_and_single_tasks_read_their_scored_split(tmp_path):
    d = str(_tasks(tmp_path))
    group, tag, geo, no_test, gone, nothing = task_items(["my_group", "my_tag", "pq_geo", "no_test", "gone", "nope"],
                                                         [d])
    assert group.texts == [Q1, "81", Q2, "The Danube flows through Vienna."] and len(group.sources) == 2
    assert tag.texts == [Q1, "81"] and not tag.unreadable  # the tag's one member, through include: _base.yaml
    assert geo.sources == [str(tmp_path / "data" / "geo.parquet")]
    assert no_test.texts == [] and "without data_files for split 'test'" in no_test.unreadable[0]
    assert "missing.jsonl" in gone.unreadable[0] and "not found" in gone.unreadable[0]
    assert nothing.unreadable == ["no such lm-eval task in lm-eval's own tasks or the include_path dirs"]
