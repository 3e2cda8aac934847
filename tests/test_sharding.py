"""The teacher sharded for inference (FSDP2 over gloo, 2 CPU processes) against the whole teacher, the setting's
resolution, and the warning of an FSDP launch on CPU processes. The trainer-level equivalence (2 processes with a
sharded teacher against 1, every loss term and the weights) is in `test_multiprocess.py`."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest
from torch import nn
from transformers import BertForMaskedLM, DistilBertConfig, DistilBertForSequenceClassification

from hf_distill.sharding import layer_blocks, resolve_teacher_sharding, warn_if_fsdp_is_off

from .conftest import REPO_ROOT, tiny_bert_config

SCRIPT = textwrap.dedent(
    """
    import copy, json, sys
    import torch
    sys.path.insert(0, {root!r})
    from transformers import (
        BertForMaskedLM, BertForQuestionAnswering, BertForSequenceClassification, DistilBertConfig,
        DistilBertForSequenceClassification,
    )
    from hf_distill import end_processes_together, make_tiny_student
    from hf_distill.sharding import local_parameter_count, process_mesh, shard_teacher
    from tests.conftest import tiny_bert_config

    def main():
        import torch.distributed as dist
        dist.init_process_group("gloo")
        torch.manual_seed(0)
        classifier = BertForSequenceClassification(tiny_bert_config(num_labels=3))
        models = {{
            "bert-classifier": classifier,
            "bert-mlm (tied decoder)": BertForMaskedLM(tiny_bert_config()),
            "bert-qa": BertForQuestionAnswering(tiny_bert_config()),
            "distilbert": DistilBertForSequenceClassification(DistilBertConfig(
                vocab_size=99, dim=32, n_layers=4, n_heads=2, hidden_dim=37, max_position_embeddings=64,
                dropout=0.0, attention_dropout=0.0)),
            "bilstm (no layer list)": make_tiny_student(classifier, "bilstm", dropout=0.0),
        }}
        ids = torch.randint(5, 99, (3, 12), generator=torch.Generator().manual_seed(1))
        mask = torch.ones_like(ids)
        mask[1, 8:] = 0
        mesh = process_mesh("cpu")
        report = {{}}
        for name, model in models.items():
            model.eval()
            before = {{k: v.clone() for k, v in model.state_dict().items()}}
            sharded = shard_teacher(model, mesh)
            inputs = dict(input_ids=ids, attention_mask=mask)
            if not name.startswith("bilstm"):
                inputs["output_hidden_states"] = True
            with torch.inference_mode():
                whole, split = model(**inputs), sharded(**inputs)
                again = sharded(**inputs)  # gathered again after the first forward's reshard
            keys = [k for k in ("logits", "start_logits", "end_logits") if k in whole]
            report[name] = {{
                "max_diff": max(float((whole[k] - split[k]).abs().max()) for k in keys),
                "repeat_diff": max(float((split[k] - again[k]).abs().max()) for k in keys),
                "hidden_diff": float((whole.hidden_states[-1] - split.hidden_states[-1]).abs().max())
                if "output_hidden_states" in inputs else 0.0,
                "local": local_parameter_count(sharded),
                "whole": sum(p.numel() for p in model.parameters()),
                "user_model_unchanged": all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
                and all(type(p.data) is torch.Tensor for p in model.parameters()),
                "frozen": not any(p.requires_grad for p in sharded.parameters()) and not sharded.training,
            }}
        # Rank-0-only loading (`accelerate launch --use_fsdp`): the other ranks' teacher is on the meta device.
        from hf_distill.sharding import materialize_from_rank0
        if dist.get_rank() == 0:
            torch.manual_seed(5)
            loaded = BertForSequenceClassification(tiny_bert_config(num_labels=3))
        else:
            with torch.device("meta"):
                loaded = BertForSequenceClassification(tiny_bert_config(num_labels=3))
        report["materialized"] = materialize_from_rank0(loaded, "cpu")
        report["checksum"] = float(sum(p.double().sum() for p in loaded.parameters()))
        report["no_meta"] = not any(p.is_meta for p in loaded.parameters())
        report["second_call"] = materialize_from_rank0(loaded, "cpu")  # nothing left to fill: no broadcast
        # The same rank-0-only teacher, sharded: rank 1 fills its shard from rank 0, and answers like rank 0's whole.
        if dist.get_rank() == 0:
            torch.manual_seed(6)
            partial = BertForSequenceClassification(tiny_bert_config(num_labels=3)).eval()
            with torch.inference_mode():
                expected = partial(input_ids=ids, attention_mask=mask).logits
        else:
            with torch.device("meta"):
                partial = BertForSequenceClassification(tiny_bert_config(num_labels=3))
            expected = torch.zeros(3, 3)
        dist.broadcast(expected, src=0)
        sharded = shard_teacher(partial, mesh)
        with torch.inference_mode():
            got = sharded(input_ids=ids, attention_mask=mask).logits
        report["meta_sharded_diff"] = float((got - expected).abs().max())
        report["meta_sharded_local"] = local_parameter_count(sharded) / sum(p.numel() for p in partial.parameters())
        with open(f"{{sys.argv[1]}}/shard_{{dist.get_rank()}}.json", "w") as f:
            json.dump(report, f)

    with end_processes_together():
        main()
    """
)


def test_a_sharded_teacher_answers_like_the_whole_one_and_holds_half(tmp_path):
    """A sharding that leaks into the outputs (a shard used as the whole weight, a tied decoder split from its
    embeddings, a root left gathered after the forward) changes the soft targets or keeps the whole teacher in every
    process; the user's teacher must be left whole and unchanged. A teacher loaded on rank 0 only (FSDP's
    RAM-efficient loading) must get rank 0's weights in every process, not stay on the meta device."""
    script = tmp_path / "shard.py"
    script.write_text(SCRIPT.format(root=str(REPO_ROOT)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script), str(tmp_path)]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-4000:]
    reports = [json.loads((tmp_path / f"shard_{rank}.json").read_text()) for rank in (0, 1)]
    # A teacher left on the meta device in rank 1 gets rank 0's weights (under FSDP nothing else fills it).
    assert all(r["materialized"] and r["no_meta"] and not r["second_call"] for r in reports)
    assert reports[0]["checksum"] == reports[1]["checksum"]
    for report in reports:  # sharded from rank 0 alone: the same answers, half the weights per process
        assert report["meta_sharded_diff"] <= 1e-6 and 0.35 < report["meta_sharded_local"] < 0.65, report
    for rank, report in enumerate(reports):
        for key in ("materialized", "checksum", "no_meta", "second_call", "meta_sharded_diff", "meta_sharded_local"):
            report.pop(key)
        assert len(report) == 5
        for name, entry in report.items():
            assert entry["max_diff"] <= 1e-6 and entry["repeat_diff"] == 0.0, (rank, name, entry)
            assert entry["hidden_diff"] <= 1e-6, (rank, name, entry)
            assert 0.35 < entry["local"] / entry["whole"] < 0.65, (rank, name, entry)
            assert entry["user_model_unchanged"] and entry["frozen"], (rank, name)


def test_layer_blocks_are_the_repeated_layers():
    """Sharding the whole teacher as one unit gathers all of it at once: the memory a sharded teacher was meant to
    save. Each transformer layer must be its own unit."""
    bert = BertForMaskedLM(tiny_bert_config())
    assert layer_blocks(bert) == list(bert.bert.encoder.layer)
    distil = DistilBertForSequenceClassification(
        DistilBertConfig(vocab_size=99, dim=32, n_layers=3, n_heads=2, hidden_dim=37, max_position_embeddings=64)
    )
    assert layer_blocks(distil) == list(distil.distilbert.transformer.layer)
    assert layer_blocks(nn.Linear(2, 2)) == []


@pytest.mark.parametrize(
    "setting, fsdp, world_size, expected",
    [
        ("auto", True, 2, "shard"),
        ("auto", False, 2, "replicate"),
        ("shard", False, 2, "shard"),
        ("replicate", True, 2, "replicate"),
        ("shard", True, 1, "replicate"),
    ],
)
def test_teacher_sharding_resolution(setting, fsdp, world_size, expected):
    """`auto` must follow the student's sharding, and one process has nothing to split the teacher across."""
    assert resolve_teacher_sharding(setting, fsdp=fsdp, world_size=world_size) == expected


def test_teacher_sharding_refusals():
    """A co-trained teacher sharded for inference would never get its gradients; an unknown value would silently
    replicate."""
    with pytest.raises(ValueError, match="cotrain_teacher=True trains it"):
        resolve_teacher_sharding("shard", fsdp=True, world_size=2, cotrain=True)
    with pytest.raises(ValueError, match="teacher_sharding must be one of"):
        resolve_teacher_sharding("zero3", fsdp=True, world_size=2)


def test_fsdp_launch_on_cpu_warns_that_nothing_is_sharded(monkeypatch, caplog):
    """`accelerate launch --use_fsdp` on CPU processes trains with DDP (or as independent runs) and says nothing; a
    user believes the model is sharded. The warning must name what runs instead."""
    args = type("Args", (), {"device": "cpu", "world_size": 2})()
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    assert not warn_if_fsdp_is_off(args)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with caplog.at_level(logging.WARNING):
        assert warn_if_fsdp_is_off(args)
    assert "NOT sharded" in caplog.text and "DDP on 2 processes" in caplog.text
    args.world_size = 1
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert warn_if_fsdp_is_off(args)
    assert "independent runs" in caplog.text
    assert not warn_if_fsdp_is_off(type("Args", (), {"device": "cuda:0", "world_size": 2})())
