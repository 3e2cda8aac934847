"""Tests for `hf_distill.glue`: the task table, loading GLUE from the shared local files and user files, metrics.

Expected values come from outside the module: row counts and label counts from `shared/data/glue/README.md`, column
names and label names from the `nyu-mll/glue` dataset card, first rows read off the TSV files, metric values worked
out by hand.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import datasets
import numpy as np
import pytest
from transformers import EvalPrediction

from hf_distill.glue import (
    GLUE_TASKS,
    compute_glue_metrics,
    get_task,
    load_glue,
    main_metric,
    make_compute_metrics,
)
from hf_distill.glue import data as glue

GLUE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "glue"

# From the `nyu-mll/glue` dataset card: columns in order, and the ClassLabel names (None: float32 score).
HUB_SCHEMA: dict[str, tuple[list[str], list[str] | None]] = {
    "cola": (["sentence", "label", "idx"], ["unacceptable", "acceptable"]),
    "sst2": (["sentence", "label", "idx"], ["negative", "positive"]),
    "mrpc": (["sentence1", "sentence2", "label", "idx"], ["not_equivalent", "equivalent"]),
    "stsb": (["sentence1", "sentence2", "label", "idx"], None),
    "qqp": (["question1", "question2", "label", "idx"], ["not_duplicate", "duplicate"]),
    "mnli": (["premise", "hypothesis", "label", "idx"], ["entailment", "neutral", "contradiction"]),
    "qnli": (["question", "sentence", "label", "idx"], ["entailment", "not_entailment"]),
    "rte": (["sentence1", "sentence2", "label", "idx"], ["entailment", "not_entailment"]),
    "wnli": (["sentence1", "sentence2", "label", "idx"], ["not_entailment", "entailment"]),
}

# Row counts from the README's table (None: the file is not in the shared folder).
ROW_COUNTS: dict[str, dict[str, int]] = {
    "cola": {"train": 8551, "validation": 1043},
    "sst2": {"train": 67349, "validation": 872},
    "mrpc": {"train": 3668, "validation": 408},
    "stsb": {"train": 5749, "validation": 1500},
    "qqp": {"validation": 40430},
    "mnli": {"validation_matched": 9815, "validation_mismatched": 9832},
    "qnli": {"validation": 5463},
    "rte": {"train": 2490, "validation": 277},
    "wnli": {"train": 635, "validation": 71},
}

# The first data row of one file per task, read off the TSV: (split, column, text, Hub label).
FIRST_ROWS: dict[str, tuple[str, str, str, int | float]] = {
    "cola": ("validation", "sentence", "The sailors rode the breeze clear of the rocks.", 1),
    "sst2": ("validation", "sentence", "it 's a charming and often affecting journey . ", 1),
    "mrpc": (
        "validation",
        "sentence2",
        '" The foodservice pie business does not fit our long-term growth strategy .',
        1,
    ),
    "stsb": ("validation", "sentence1", "A man with a hard hat is dancing.", 5.0),
    "qqp": ("validation", "question2", "Why are hispanics so beautiful?", 0),
    "mnli": (
        "validation_mismatched",
        "hypothesis",
        "Your contributions were of no help with our students' education.",
        2,
    ),
    "qnli": ("validation", "question", "What came into force after the new constitution was herald?", 0),
    "rte": ("validation", "sentence2", "Christopher Reeve had an accident.", 1),
    "wnli": ("validation", "sentence2", "The hair has to be cleaned.", 0),
}


@pytest.fixture(scope="module")
def glue_dir() -> Path:
    if not (GLUE_DIR / "README.md").is_file():
        pytest.skip(f"shared GLUE data not found at {GLUE_DIR}")
    return GLUE_DIR


@pytest.fixture(scope="module")
def local(glue_dir):
    """Every task loaded once from the shared folder (train where present), shared by the tests of this module."""
    return {name: load_glue(name, glue_dir=glue_dir, require_train=False) for name in GLUE_TASKS}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------------------------------
# Task table
# ---------------------------------------------------------------------------------------------------------------------


def test_task_table_matches_hub_schema():
    """A task entry with the wrong keys or label order would tokenize the wrong column or flip label ids."""
    assert set(GLUE_TASKS) == set(HUB_SCHEMA)
    for name, (columns, label_names) in HUB_SCHEMA.items():
        task = GLUE_TASKS[name]
        assert list(task.features) == columns
        assert [*task.text_keys, "label", "idx"] == columns
        if label_names is None:
            assert task.is_regression and task.num_labels == 1
            assert task.features["label"] == datasets.Value("float32")
        else:
            assert not task.is_regression and task.num_labels == len(label_names)
            assert task.features["label"].names == label_names
    assert GLUE_TASKS["mnli"].validation_splits == ("validation_matched", "validation_mismatched")
    assert all(task.validation_splits == ("validation",) for name, task in GLUE_TASKS.items() if name != "mnli")


def test_get_task_accepts_glue_spellings_and_rejects_unknown_names():
    """The recipe's `--task_name SST-2` must not fail, and a typo must list the valid names rather than KeyError."""
    assert get_task("SST-2").name == "sst2"
    assert get_task("sts-b").name == "stsb"
    assert get_task("MNLI").name == "mnli"
    assert get_task("CoLA").name == "cola"
    assert get_task(GLUE_TASKS["rte"]) is GLUE_TASKS["rte"]
    with pytest.raises(ValueError, match="sst2.*wnli"):
        get_task("sst3")


def test_main_metric_is_a_key_of_the_computed_metrics():
    """Retention read from a key that compute_glue_metrics never returns would be a KeyError after a full training."""
    expected = {"cola": "matthews_correlation", "stsb": "pearson", "mrpc": "f1", "qqp": "f1"}
    for name, task in GLUE_TASKS.items():
        assert main_metric(name) == expected.get(name, "accuracy")
        labels = np.array([0.0, 1.0, 2.0, 0.5]) if task.is_regression else np.array([0, 1, 1, 0])
        assert main_metric(task) in compute_glue_metrics(task, labels, labels)


# ---------------------------------------------------------------------------------------------------------------------
# The shared GLUE folder
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(GLUE_TASKS))
def test_local_glue_matches_hub_layout(local, name):
    """Reading the TSVs with the wrong header, quoting or BOM handling shifts row counts, columns or text."""
    dataset = local[name]
    columns, label_names = HUB_SCHEMA[name]
    assert {split: len(dataset[split]) for split in dataset} == ROW_COUNTS[name]
    for split in dataset:
        assert dataset[split].column_names == columns
        assert dataset[split].features == GLUE_TASKS[name].features
        assert dataset[split][:3]["idx"] == [0, 1, 2]
        assert dataset[split][-1:]["idx"] == [len(dataset[split]) - 1]
    split, column, text, label = FIRST_ROWS[name]
    first = dataset[split][0]
    assert first[column] == text
    assert first["label"] == label


def test_local_label_ids_follow_the_hub_encoding(local):
    """RTE/QNLI store class names and WNLI's Hub order is reversed: a naive mapping would flip every label."""
    # RTE dev rows 1-3 are not_entailment, entailment, not_entailment; the Hub maps entailment -> 0.
    assert local["rte"]["validation"][:3]["label"] == [1, 0, 1]
    assert local["rte"]["train"][:2]["label"] == [1, 0]
    assert local["qnli"]["validation"][:2]["label"] == [0, 1]
    # WNLI dev row 2 ("Susan did not answer.") is stored as 1, which the Hub names "entailment".
    wnli = local["wnli"]["validation"]
    assert wnli.features["label"].int2str(wnli[1]["label"]) == "entailment"
    # Label counts from the README / a count of the raw files.
    assert np.bincount(local["sst2"]["train"]["label"]).tolist() == [29780, 37569]
    assert np.bincount(local["mnli"]["validation_matched"]["label"]).tolist() == [3479, 3123, 3213]
    assert np.bincount(local["rte"]["validation"]["label"]).tolist() == [146, 131]
    assert np.bincount(local["cola"]["validation"]["label"]).tolist() == [322, 721]


def test_local_stsb_scores_are_float32_in_range(local):
    """STS-B scores read as strings or ints would make the regression target wrong or the collator fail."""
    scores = local["stsb"]["validation"].with_format("numpy")["label"][:]
    assert scores.dtype == np.float32
    assert scores.min() == 0.0 and scores.max() == 5.0
    assert local["stsb"]["validation"][1]["label"] == pytest.approx(4.75)
    assert (scores != np.round(scores)).any()


def test_local_mrpc_bom_and_quotes(local):
    """Without utf-8-sig the label column is `\\ufeffQuality`; with default quoting a `"` joins lines into a field."""
    mrpc = local["mrpc"]["train"]
    # Row 92 is the pair the README restored, whose text holds `"` characters.
    assert mrpc[91]["sentence1"].startswith('Officials at Brandeis said this was an " extremely heartrending "')
    assert np.bincount(mrpc["label"]).tolist() == [1194, 2474]


def test_local_qqp_dev_loads_fast(glue_dir):
    """A row-by-row Dataset build (e.g. .map per row) would make the 40k-row QQP dev slow enough to hurt every run."""
    start = time.perf_counter()
    qqp = load_glue("qqp", glue_dir=glue_dir, require_train=False)
    assert time.perf_counter() - start < 5.0
    assert len(qqp["validation"]) == 40430


@pytest.mark.parametrize("name", ["qnli", "qqp", "mnli"])
def test_missing_local_train_is_a_helpful_error(glue_dir, name):
    """A dev-only task must not train on nothing: the error names the missing file and the flags that fix it."""
    task = GLUE_TASKS[name]
    with pytest.raises(ValueError) as excinfo:
        load_glue(name, glue_dir=glue_dir)
    message = str(excinfo.value)
    assert str(glue_dir / task.local_dir / "train.tsv") in message
    assert "--train_file" in message and "--glue_dir" in message


def test_local_train_can_come_from_a_train_file(glue_dir, tmp_path):
    """`--glue_dir` plus `--train_file` for QNLI must take train from the file and validation from the folder."""
    train = write(tmp_path / "qnli_train.tsv", "question\tsentence\tlabel\nWho?\tHim.\tnot_entailment\n")
    dataset = load_glue("qnli", glue_dir=glue_dir, train_file=train, cache_dir=tmp_path / "cache")
    assert list(dataset) == ["train", "validation"]
    assert dataset["train"][0] == {"question": "Who?", "sentence": "Him.", "label": 1, "idx": 0}
    assert len(dataset["validation"]) == 5463


# ---------------------------------------------------------------------------------------------------------------------
# Wrong layouts
# ---------------------------------------------------------------------------------------------------------------------


def test_glue_dir_missing_or_without_task_folder(tmp_path):
    """A mistyped --glue_dir must fail with the path and the expected layout, not a bare FileNotFoundError."""
    with pytest.raises(ValueError, match=r"is not a directory.*SST-2/.*dev\.tsv"):
        load_glue("sst2", glue_dir=tmp_path / "nope")
    with pytest.raises(ValueError, match=r"SST-2 does not exist"):
        load_glue("sst2", glue_dir=tmp_path)


def test_glue_dir_missing_dev_file(tmp_path):
    """A task folder without its dev file (here MNLI without dev_mismatched.tsv) must not load a partial task."""
    header = "premise\thypothesis\tlabel\tidx\n"
    write(tmp_path / "MNLI" / "dev_matched.tsv", header + "P\tH\t0\t0\n")
    with pytest.raises(ValueError, match=r"dev_mismatched\.tsv does not exist"):
        load_glue("mnli", glue_dir=tmp_path, require_train=False)


def test_glue_dir_wrong_columns(tmp_path):
    """A file whose header lacks a needed column (here RTE's `label`) must name the file and the expected header."""
    write(tmp_path / "RTE" / "dev.tsv", "index\tsentence1\tsentence2\tgold\n0\ta\tb\tentailment\n")
    with pytest.raises(ValueError, match=r"RTE/dev\.tsv does not have the columns.*'label'"):
        load_glue("rte", glue_dir=tmp_path, require_train=False)


def test_glue_dir_wrong_field_count_and_bad_label(tmp_path):
    """A CoLA file given a header, or a row with a stray tab, must fail loudly instead of shifting columns."""
    write(tmp_path / "CoLA" / "dev.tsv", "gj04\t1\t\tA sentence.\ngj04\t0\t*\tToo\tmany\n")
    with pytest.raises(ValueError, match=r"line 2: expected 4 tab-separated fields, found 5"):
        load_glue("cola", glue_dir=tmp_path, require_train=False)
    write(tmp_path / "CoLA" / "dev.tsv", "source\tlabel\tmark\tsentence\ngj04\t1\t\tA sentence.\n")
    with pytest.raises(ValueError, match=r"line 1: label 'label' is not one of"):
        load_glue("cola", glue_dir=tmp_path, require_train=False)


def test_glue_dir_accepts_original_mnli_layout(tmp_path):
    """An original GLUE MNLI file (sentence1/sentence2/gold_label names) must map to premise/hypothesis/Hub ids."""
    header = "index\tgenre\tsentence1\tsentence2\tlabel1\tgold_label\n"
    rows = '0\tfiction\tA "quoted" premise.\tH1\tneutral\tcontradiction\n1\tslate\tP2\tH2\tneutral\tneutral\n'
    write(tmp_path / "MNLI" / "dev_matched.tsv", header + rows)
    write(tmp_path / "MNLI" / "dev_mismatched.tsv", header + rows)
    dataset = load_glue("mnli", glue_dir=tmp_path, require_train=False)
    assert dataset["validation_matched"][0] == {
        "premise": 'A "quoted" premise.',
        "hypothesis": "H1",
        "label": 2,
        "idx": 0,
    }
    assert dataset["validation_mismatched"]["label"][:] == [2, 1]


# ---------------------------------------------------------------------------------------------------------------------
# User files
# ---------------------------------------------------------------------------------------------------------------------


def test_user_files_csv_tsv_json(tmp_path):
    """Each supported format must come back with the Hub's columns and label ids, whatever the label spelling."""
    train = write(
        tmp_path / "train.csv",
        'sentence1,sentence2,label\n"A, with comma",NA,entailment\nB,C,not_entailment\n',
    )
    validation = write(tmp_path / "dev.tsv", 'sentence1\tsentence2\tlabel\n" quoted\tx\t1\nY\tZ\t0\n')
    dataset = load_glue("rte", train_file=train, validation_file=validation, cache_dir=tmp_path / "cache")
    assert list(dataset) == ["train", "validation"]
    # "NA" stays text (pandas would read it as missing), the csv quoting is honoured, names map to Hub ids.
    assert dataset["train"][0] == {"sentence1": "A, with comma", "sentence2": "NA", "label": 0, "idx": 0}
    assert dataset["train"][1]["label"] == 1
    # The tsv is read unquoted, as GLUE files are.
    assert dataset["validation"][0]["sentence1"] == '" quoted'
    assert dataset["validation"]["label"][:] == [1, 0]
    assert dataset["validation"].features["label"].names == ["entailment", "not_entailment"]

    lines = [
        {"sentence1": "a", "sentence2": "b", "label": 3.5, "extra": 7},
        {"sentence1": "c", "sentence2": "d", "label": 0},
    ]
    jsonl = write(tmp_path / "stsb.jsonl", "\n".join(json.dumps(line) for line in lines) + "\n")
    stsb = load_glue("stsb", train_file=jsonl, validation_file=jsonl, cache_dir=tmp_path / "cache")
    assert stsb["train"].features["label"] == datasets.Value("float32")
    assert stsb["train"]["label"][:] == [3.5, 0.0]
    assert stsb["train"]["idx"][:] == [0, 1]
    assert "extra" in stsb["train"].column_names


def test_user_file_for_mnli_is_validation_matched(tmp_path):
    """MNLI has no `validation` split: a --validation_file must become `validation_matched`, not a stray split."""
    path = write(tmp_path / "mnli.json", json.dumps({"premise": "p", "hypothesis": "h", "label": "neutral"}) + "\n")
    dataset = load_glue("mnli", train_file=path, validation_file=path, cache_dir=tmp_path / "cache")
    assert list(dataset) == ["train", "validation_matched"]
    assert dataset["validation_matched"][0]["label"] == 1


def test_user_file_missing_column(tmp_path):
    """A file with GLUE's original column names (e.g. `#1 String`) must fail naming the missing and found columns."""
    path = write(tmp_path / "mrpc.tsv", "Quality\t#1 String\tsentence2\n1\ta\tb\n")
    with pytest.raises(ValueError) as excinfo:
        load_glue("mrpc", train_file=path, validation_file=path, cache_dir=tmp_path / "cache")
    message = str(excinfo.value)
    assert "['sentence1', 'label']" in message and "#1 String" in message and "Quality" in message


def test_user_file_bad_labels(tmp_path):
    """Labels outside the task's classes (an unknown name, or GLUE's -1 for unlabelled) must not train silently."""
    unknown = write(tmp_path / "unknown.csv", "sentence,label\na,maybe\n")
    with pytest.raises(ValueError, match=r"do not fit sst2.*maybe"):
        load_glue("sst2", train_file=unknown, validation_file=unknown, cache_dir=tmp_path / "cache")
    unlabelled = write(tmp_path / "unlabelled.csv", "sentence,label\na,-1\nc,1\n")
    with pytest.raises(ValueError, match=r"label ids \[-1\] outside 0\.\.1"):
        load_glue("sst2", train_file=unlabelled, validation_file=unlabelled, cache_dir=tmp_path / "cache")
    too_large = write(tmp_path / "too_large.csv", "sentence,label\na,0\nb,2\n")
    with pytest.raises(ValueError, match=r"sst2.*2"):
        load_glue("sst2", train_file=too_large, validation_file=too_large, cache_dir=tmp_path / "cache")


def test_user_files_without_a_split_source(tmp_path):
    """Files alone must cover both splits: a silent Hub download, or no validation set, would surprise the user."""
    path = write(tmp_path / "d.csv", "sentence,label\na,1\n")
    with pytest.raises(ValueError, match="--validation_file"):
        load_glue("sst2", train_file=path, cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="--train_file"):
        load_glue("sst2", validation_file=path, cache_dir=tmp_path / "cache")
    assert list(load_glue("sst2", validation_file=path, require_train=False, cache_dir=tmp_path / "cache")) == [
        "validation"
    ]
    with pytest.raises(ValueError, match=r"must end in \.csv, \.tsv, \.json or \.jsonl"):
        load_glue("sst2", train_file=shutil.copy(path, tmp_path / "d.txt"), validation_file=path)
    with pytest.raises(ValueError, match="does not exist"):
        load_glue("sst2", train_file=tmp_path / "missing.csv", validation_file=path)


def test_default_source_is_the_hub(monkeypatch):
    """Without a local source the task must come from `nyu-mll/glue` with its Hub config name, untouched."""
    calls = []
    sentinel = datasets.DatasetDict()

    def fake_load_dataset(*args, **kwargs):
        calls.append((args, kwargs))
        return sentinel

    monkeypatch.setattr(glue.datasets, "load_dataset", fake_load_dataset)
    assert load_glue("SST-2") is sentinel
    assert load_glue("mnli", cache_dir="/tmp/c") is sentinel
    assert calls == [
        (("nyu-mll/glue", "sst2"), {"cache_dir": None}),
        (("nyu-mll/glue", "mnli"), {"cache_dir": "/tmp/c"}),
    ]


# ---------------------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------------------


def test_accuracy_golden():
    """Accuracy must be the fraction of exact matches (3 of 4 here)."""
    assert compute_glue_metrics("sst2", [1, 0, 1, 1], [1, 0, 0, 1]) == {"accuracy": 0.75}
    assert compute_glue_metrics("mnli", [0, 1, 2, 2], [0, 1, 2, 0]) == {"accuracy": 0.75}


def test_f1_golden():
    """F1 must be of the positive class 1: TP=2, FP=1, FN=1 gives 2/3, not the macro F1 or the class-0 F1 (1/2)."""
    result = compute_glue_metrics("mrpc", [1, 1, 0, 1, 0], [1, 1, 1, 0, 0])
    assert result["f1"] == pytest.approx(2 / 3)
    assert result["accuracy"] == pytest.approx(3 / 5)
    assert result["combined_score"] == pytest.approx((2 / 3 + 3 / 5) / 2)


def test_matthews_golden():
    """CoLA's MCC for TP=1, TN=2, FP=0, FN=1 is 2 / sqrt(1*2*2*3); accuracy (0.75) in its place would mislead."""
    result = compute_glue_metrics("cola", [1, 0, 0, 0], [1, 1, 0, 0])
    assert result == {"matthews_correlation": pytest.approx(2 / math.sqrt(12))}


def test_correlations_golden():
    """STS-B: Pearson of linear data is 1; a monotone curve keeps Spearman at 1 but not Pearson; one worked value."""
    x = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    assert compute_glue_metrics("stsb", 2 * x + 1, x)["pearson"] == pytest.approx(1.0)
    cubic = compute_glue_metrics("stsb", x**3, x)
    assert cubic["spearmanr"] == pytest.approx(1.0) and cubic["pearson"] < 0.99
    # Deviations (-1, 0, 1) and (-1, 1, 0): covariance 1, variances 2 and 2 -> 0.5; the ranks are the same values.
    assert compute_glue_metrics("stsb", [1.0, 2.0, 3.0], [1.0, 3.0, 2.0]) == pytest.approx(
        {"pearson": 0.5, "spearmanr": 0.5, "combined_score": 0.5}
    )


def test_compute_glue_metrics_rejects_logits_and_length_mismatch():
    """Logits passed as predictions would compare a 2-D array to labels by broadcasting and report nonsense."""
    with pytest.raises(ValueError, match="1-D arrays of equal length"):
        compute_glue_metrics("sst2", np.zeros((4, 2)), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="1-D arrays of equal length"):
        compute_glue_metrics("sst2", [0, 1], [0, 1, 1])


def test_make_compute_metrics_classification():
    """Trainer passes logits (and extra outputs in a tuple): argmax of the first must be scored, not the raw array."""
    logits = np.array([[2.0, -1.0], [0.1, 0.3], [1.0, 0.0], [-3.0, 3.0]])
    labels = np.array([0, 1, 1, 1])
    compute_metrics = make_compute_metrics("sst2")
    assert compute_metrics(EvalPrediction(predictions=logits, label_ids=labels)) == {"accuracy": 0.75}
    hidden = np.zeros((4, 5, 8))
    assert compute_metrics(EvalPrediction(predictions=(logits, hidden), label_ids=labels)) == {"accuracy": 0.75}
    with pytest.raises(ValueError, match=r"shape \(num_examples, 3\)"):
        make_compute_metrics("mnli")(EvalPrediction(predictions=logits, label_ids=labels))


def test_make_compute_metrics_regression():
    """A regression head outputs shape (N, 1): it must be squeezed, not argmaxed (which gives all zeros)."""
    scores = np.array([[1.0], [2.0], [3.0]])
    result = make_compute_metrics("stsb")(EvalPrediction(predictions=scores, label_ids=np.array([1.0, 3.0, 2.0])))
    assert result == pytest.approx({"pearson": 0.5, "spearmanr": 0.5, "combined_score": 0.5})


@pytest.mark.parametrize("task_name", ["cola", "mrpc", "stsb", "mnli"])
def test_the_local_evaluate_module_gives_the_same_metrics(task_name, tmp_path, monkeypatch):
    """`evaluate` was declared but unused; the offline GLUE metric is also a local `evaluate` module. Loaded with
    `evaluate.load(GLUE_METRIC_PATH, task)` without the Hub, it must give `compute_glue_metrics`'s keys and values."""
    import evaluate
    import numpy as np

    from hf_distill.glue import GLUE_METRIC_PATH

    monkeypatch.setenv("HF_HOME", str(tmp_path))  # evaluate caches the module there
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    task = get_task(task_name)
    rng = np.random.default_rng(0)
    if task.is_regression:
        predictions, references = rng.uniform(0, 5, 20).tolist(), rng.uniform(0, 5, 20).tolist()
    else:
        predictions = rng.integers(0, task.num_labels, 20).tolist()
        references = rng.integers(0, task.num_labels, 20).tolist()
    metric = evaluate.load(GLUE_METRIC_PATH, task.name)
    got = metric.compute(predictions=predictions, references=references)
    expected = compute_glue_metrics(task, predictions, references)
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key
