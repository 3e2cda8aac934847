"""The Accelerate FSDP path on GPUs: one short check, skipped without 2 GPUs (it has not run on this project's CPU
machines; see the README's "Scaling out").

    .venv/bin/python -m pytest -q -m gpu tests/test_fsdp_gpu.py

It launches `accelerate launch --use_fsdp --fsdp_version 2 --num_processes 2` on a small BERT pair and checks:
- equivalence: every logged loss term and the final student equal a 1-GPU run with the same global batch (1e-4:
  GPU reductions are not bitwise reproducible across shardings);
- the teacher: sharded (`teacher_sharding="auto"` under FSDP), about half of it per process, never in a checkpoint;
- checkpoints: a run stopped at step 4 and resumed equals the uninterrupted one; `save_model` writes a normal,
  unsharded student that `from_pretrained` loads;
- memory: peak GPU memory per process with the teacher sharded and replicated (printed, and written to
  `<tmp>/memory.json`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from .conftest import REPO_ROOT

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs 2 GPUs (FSDP through Accelerate)"
    ),
]

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    sys.path.insert(0, {root!r})
    from transformers import BertConfig, BertForSequenceClassification, TrainerCallback
    from hf_distill import DistillationTrainer, DistillationTrainingArguments, end_processes_together
    from hf_distill.sharding import local_parameter_count
    from tests.conftest import pad_collate, random_token_dataset

    def config(layers):
        return BertConfig(hidden_size=256, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=512,
                          vocab_size=99, max_position_embeddings=64, hidden_dropout_prob=0.0,
                          attention_probs_dropout_prob=0.0, num_labels=3)

    class StopAt(TrainerCallback):
        def __init__(self, step):
            self.step = step
        def on_step_end(self, args, state, control, **kwargs):
            control.should_training_stop = self.step is not None and state.global_step == self.step

    def main():
        output_dir, per_device, sharding, stop, resume = sys.argv[1:6]
        torch.manual_seed(0)
        teacher = BertForSequenceClassification(config(8))
        torch.manual_seed(1)
        student = BertForSequenceClassification(config(2))
        args = DistillationTrainingArguments(
            output_dir=output_dir, per_device_train_batch_size=int(per_device), max_steps=6, logging_steps=1,
            learning_rate=1e-3, save_strategy="steps", save_steps=2, report_to="none", seed=7, data_seed=7,
            disable_tqdm=True, dataloader_drop_last=True, teacher_sharding=sharding,
        )
        trainer = DistillationTrainer(model=student, teacher_model=teacher, args=args,
                                      train_dataset=random_token_dataset(64, seed=3), data_collator=pad_collate)
        trainer.add_callback(StopAt(int(stop) if stop != "none" else None))
        torch.cuda.reset_peak_memory_stats()
        trainer.train(resume_from_checkpoint=resume if resume != "none" else None)
        trainer.save_model()
        record = {{
            "fsdp": bool(trainer.is_fsdp_enabled),
            "logs": [e for e in trainer.state.log_history if "loss" in e],
            "teacher_local": local_parameter_count(trainer.teacher_model),
            "teacher_whole": sum(p.numel() for p in teacher.parameters()),
            "peak_memory_mb": torch.cuda.max_memory_allocated() / 2**20,
        }}
        with open(f"{{output_dir}}/record_{{trainer.args.process_index}}.json", "w") as f:
            json.dump(record, f)

    with end_processes_together():
        main()
    """
)


def _run(tmp_path, name, processes, per_device, sharding="auto", stop="none", resume="none"):
    script = tmp_path / "fsdp_run.py"
    script.write_text(SCRIPT.format(root=str(REPO_ROOT)))
    output_dir = tmp_path / name
    if processes == 1:
        command = [sys.executable, str(script)]
    else:
        command = [
            sys.executable, "-m", "accelerate.commands.launch", "--use_fsdp", "--fsdp_version", "2",
            "--fsdp_state_dict_type", "FULL_STATE_DICT", "--num_processes", str(processes), "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", str(script),
        ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    completed = subprocess.run(
        [*command, str(output_dir), str(per_device), sharding, stop, resume],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads((output_dir / "record_0.json").read_text()), output_dir


def test_fsdp_through_accelerate_on_two_gpus(tmp_path):
    """The FSDP path cannot be tested on CPU processes (Accelerate enables FSDP on GPUs only): a teacher left on one
    device, an all-gather leaking into the loss, a checkpoint that holds the teacher or cannot be resumed, or a
    sharded `save_model` would all pass the CPU suite."""
    from safetensors import safe_open
    from transformers import AutoModelForSequenceClassification

    one, _ = _run(tmp_path, "one", 1, 16)
    two, two_dir = _run(tmp_path, "two", 2, 8)
    assert two["fsdp"] and 0.4 < two["teacher_local"] / two["teacher_whole"] < 0.6
    assert len(one["logs"]) == len(two["logs"]) == 6
    for a, b in zip(one["logs"], two["logs"]):
        for key in (k for k in a if k.startswith("loss")):
            assert b[key] == pytest.approx(a[key], abs=1e-4), (a["step"], key)
    # save_model: a normal student, equal to the one-GPU student.
    students = [AutoModelForSequenceClassification.from_pretrained(tmp_path / name) for name in ("one", "two")]
    for (key, value), other in zip(students[0].state_dict().items(), students[1].state_dict().values()):
        torch.testing.assert_close(other, value, atol=1e-4, rtol=0, msg=key)
    with safe_open(str(two_dir / "checkpoint-2" / "model.safetensors"), "pt") as saved:
        assert not any("layer.2." in key for key in saved.keys())  # the 2-layer student only
    # Stopped at step 4 and resumed: equal to the uninterrupted run.
    _run(tmp_path, "cut", 2, 8, stop="4")
    resumed, _ = _run(tmp_path, "cut", 2, 8, resume=str(tmp_path / "cut" / "checkpoint-4"))
    for a, b in zip(two["logs"][4:], resumed["logs"][-2:]):
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-4)
    # Memory per process, the teacher sharded and replicated.
    replicated, _ = _run(tmp_path, "replicated", 2, 8, sharding="replicate")
    memory = {"sharded_mb": two["peak_memory_mb"], "replicated_mb": replicated["peak_memory_mb"]}
    (tmp_path / "memory.json").write_text(json.dumps(memory))
    print("peak GPU memory per process:", memory)
    assert memory["sharded_mb"] < memory["replicated_mb"]
