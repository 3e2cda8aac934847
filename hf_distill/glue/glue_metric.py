"""The GLUE metric as a local `evaluate` module, for `evaluate.load` without the Hub.

    import evaluate
    from hf_distill.glue import GLUE_METRIC_PATH

    metric = evaluate.load(GLUE_METRIC_PATH, "mrpc")
    metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])  # {"accuracy": ..., "f1": ...}

It gives the keys and values of the Hub's `glue` metric (plus `run_glue.py`'s `combined_score`), computed by
`hf_distill.glue.metrics.compute_glue_metrics`. `evaluate` copies this file into its module cache before importing it,
so it imports `hf_distill` by absolute name.
"""

import datasets
import evaluate

from hf_distill.glue.metrics import compute_glue_metrics
from hf_distill.glue.tasks import GLUE_CITATION, GLUE_TASKS, get_task


class Glue(evaluate.Metric):
    """GLUE metrics (Wang et al. 2018), offline: accuracy, F1, Matthews or Pearson/Spearman by task."""

    def _info(self) -> evaluate.MetricInfo:
        if self.config_name not in GLUE_TASKS and self.config_name.replace("-", "") not in GLUE_TASKS:
            raise KeyError(f"the GLUE metric needs a task name as its config, one of {sorted(GLUE_TASKS)}")
        task = get_task(self.config_name)
        value = datasets.Value("float32" if task.is_regression else "int64")
        return evaluate.MetricInfo(
            description="GLUE metrics computed offline with scikit-learn and SciPy (hf_distill).",
            citation=GLUE_CITATION,
            inputs_description="predictions and references: class ids, or scores for stsb",
            features=datasets.Features({"predictions": value, "references": value}),
        )

    def _compute(self, predictions, references):
        return compute_glue_metrics(self.config_name, predictions, references)
