"""`DistillationTrainer` with the intermediate-layer terms: hints (and their projections), attention, relations and
schedules, on tiny models built in process."""

from __future__ import annotations

import copy
import os

import pytest
import torch
from transformers import BertForSequenceClassification, DistilBertConfig, DistilBertForSequenceClassification

from hf_distill import DistillationTrainer, cache_teacher_outputs
from hf_distill.layer_terms import PROJECTIONS_NAME
from hf_distill.losses import mse_loss

from .conftest import pad_collate, random_token_dataset, tiny_bert_config
from .test_trainer import StopAt, make_args, make_trainer, one_batch_loss, student_like, train_logs

LAYERS = dict(alpha_hint=1.0, alpha_attn=1.0, alpha_rel=1.0)


def narrow_student(seed: int = 5) -> BertForSequenceClassification:
    """Hidden 16 against the tiny teacher's 32, 2 layers, the teacher's 2 heads: `make_student` cannot build it."""
    torch.manual_seed(seed)
    return BertForSequenceClassification(
        tiny_bert_config(num_labels=3, num_hidden_layers=2, hidden_size=16, intermediate_size=20)
    )


def batch_of(rows: int = 6, seed: int = 3) -> dict:
    return pad_collate([random_token_dataset(rows, seed=seed)[i] for i in range(rows)])


@pytest.mark.parametrize("attn_loss", ["mse", "kl"])
@pytest.mark.parametrize("hint_loss", ["mse", "cosine", "pkd"])
def test_layer_terms_are_zero_when_the_student_is_the_teacher(tiny_classifier, tmp_path, hint_loss, attn_loss):
    """A term that compares mismatched layers, heads or padding is not zero for a student equal to its teacher."""
    student = copy.deepcopy(tiny_classifier)
    trainer = make_trainer(student, tiny_classifier, tmp_path, hint_loss=hint_loss, attn_loss=attn_loss, **LAYERS)
    assert trainer.layer_plan.hint_pairs == [(1, 1), (2, 2), (3, 3), (4, 4)] and trainer.hint_projections is None
    _, parts = one_batch_loss(trainer, batch_of())
    for name in ("hint", "attn", "rel", "kd", "cos"):
        assert parts[name] == pytest.approx(0.0, abs=1e-5), name


def test_layer_terms_match_independent_formulas(tiny_classifier, tmp_path):
    """Hints on the wrong hidden states, attention from the wrong layers or over padding keys, or relations without
    the sum over queries, keys and values give other values than the models' own outputs do (eager attention
    probabilities, hidden states), computed here without the library's capture."""
    teacher = tiny_classifier
    student = student_like(teacher)
    teacher.config._attn_implementation = "eager"
    student.config._attn_implementation = "eager"
    trainer = make_trainer(student, teacher, tmp_path, attn_loss="kl", **LAYERS)
    assert trainer.layer_plan.hint_pairs == [(1, 2), (2, 4)]
    batch = batch_of()
    _, parts = one_batch_loss(trainer, batch)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        s = student(**inputs, output_hidden_states=True, output_attentions=True)
        t = teacher(**inputs, output_hidden_states=True, output_attentions=True)
    mask = batch["attention_mask"].bool()
    hint = sum(mse_loss(s.hidden_states[i], t.hidden_states[j], mask=mask).item() for i, j in ((1, 2), (2, 4))) / 2
    assert parts["hint"] == pytest.approx(hint, rel=1e-5)

    def row_kl(p_teacher, p_student):
        keys = mask[:, None, None, :]
        terms = torch.where(keys, p_teacher * (p_teacher.clamp_min(1e-30).log() - p_student.clamp_min(1e-30).log()), 0)
        return terms.sum(-1).mean(1)[mask].mean().item()

    attn = (row_kl(t.attentions[1], s.attentions[0]) + row_kl(t.attentions[3], s.attentions[1])) / 2
    assert parts["attn"] == pytest.approx(attn, rel=1e-4)
    assert parts["rel"] > 0


def test_narrow_student_trains_its_projections_and_saves_a_clean_student(tiny_classifier, tmp_path):
    """Projections kept out of the optimizer never learn; inside the student's module tree they leak into its
    checkpoint and `from_pretrained` reports unexpected keys; hooks left on either model change the user's objects.
    The saved student must load cleanly, with the projections in their own file beside it and in every
    checkpoint."""
    student = narrow_student()
    trainer = make_trainer(
        student, tiny_classifier, tmp_path, alpha_cos=0.0, relation_heads=2, save_strategy="steps", save_steps=2,
        **LAYERS,
    )  # fmt: skip
    projections = trainer.hint_projections
    assert projections is not None and len(projections.maps) == 2
    assert not any(p is q for p in student.parameters() for q in projections.parameters())
    before = {k: v.clone() for k, v in projections.state_dict().items()}
    logs = train_logs(trainer)
    assert {"loss_hint", "loss_attn", "loss_rel"} <= logs[0].keys()
    # The recording hooks (on the query, key and value projections) are gone after each step: the user's teacher
    # and the saved student carry none. (transformers installs its own output-capturing hooks on layers.)
    values = [m for model in (tiny_classifier, student) for n, m in model.named_modules() if n.endswith("value")]
    assert values and not any(module._forward_hooks for module in values)
    held = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert all(id(p) in held for p in projections.parameters())
    assert any(not torch.equal(before[k], v) for k, v in projections.state_dict().items())
    trainer.save_model()
    out = tmp_path / "out"
    assert (out / PROJECTIONS_NAME).is_file() and (out / "checkpoint-2" / PROJECTIONS_NAME).is_file()
    loaded, info = BertForSequenceClassification.from_pretrained(out, output_loading_info=True)
    assert not info["unexpected_keys"] and not info["missing_keys"]
    assert loaded.config.hidden_size == 16


def test_gradient_accumulation_is_exact_with_layer_terms_and_projections(tiny_classifier, tmp_path):
    """The layer terms summed per micro-batch and divided by the accumulated batch's token count give 8 x 1 = 2 x 4;
    a per-micro-batch mean (or projections stepped at every micro-batch) does not."""
    dataset = random_token_dataset(32, seed=11)
    runs = {}
    for batch_size, accumulation in ((8, 1), (2, 4)):
        trainer = make_trainer(
            narrow_student(), tiny_classifier, tmp_path / f"{batch_size}x{accumulation}", dataset=dataset,
            per_device_train_batch_size=batch_size, gradient_accumulation_steps=accumulation, max_steps=3,
            alpha_cos=0.0, relation_heads=2, hint_embeddings=True, **LAYERS,
        )  # fmt: skip
        logs = train_logs(trainer)
        weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        weights.update({f"projection.{k}": v.clone() for k, v in trainer.hint_projections.state_dict().items()})
        runs[(batch_size, accumulation)] = (logs, weights)
    (logs_a, weights_a), (logs_b, weights_b) = runs[(8, 1)], runs[(2, 4)]
    for a, b in zip(logs_a, logs_b, strict=True):
        for key in ("loss", "loss_hint", "loss_attn", "loss_rel", "loss_kd"):
            assert a[key] == pytest.approx(b[key], abs=1e-5), key
    for name in weights_a:
        torch.testing.assert_close(weights_a[name], weights_b[name], atol=1e-5, rtol=0, msg=name)


def test_resume_restores_projections_and_schedules_exactly(tiny_classifier, tmp_path):
    """A resume that re-initialises the projections, or restarts a schedule, differs from the uninterrupted run it
    continues; so does a run whose projection gradients pile up over steps (`Trainer` zeroes only the student's,
    and the resumed run starts from clean ones). Every logged value and the final student and projections must
    match to 1e-6."""
    dataset = random_token_dataset(48, seed=14)
    overrides = dict(
        max_steps=6, save_strategy="steps", save_steps=2, logging_steps=1, alpha_cos=0.0, relation_heads=2,
        schedules=["alpha_kd:1:cosine", "temperature:1"], **LAYERS,
    )  # fmt: skip
    full = make_trainer(narrow_student(), tiny_classifier, tmp_path / "full", dataset=dataset, **overrides)
    full_logs = train_logs(full)
    assert full_logs[0]["alpha_kd"] == 5.0 and full_logs[-1]["alpha_kd"] == pytest.approx(1.0)
    assert full_logs[-1]["temperature"] == pytest.approx(1.0)

    interrupted = make_trainer(narrow_student(), tiny_classifier, tmp_path / "cut", dataset=dataset, **overrides)
    interrupted.add_callback(StopAt(4))
    interrupted.train()
    resumed = make_trainer(narrow_student(seed=999), tiny_classifier, tmp_path / "cut", dataset=dataset, **overrides)
    resumed.train(resume_from_checkpoint=str(tmp_path / "cut" / "out" / "checkpoint-4"))
    resumed_logs = [entry for entry in resumed.state.log_history if "loss" in entry]
    assert [e["step"] for e in resumed_logs] == [e["step"] for e in full_logs]
    for a, b in zip(full_logs, resumed_logs):
        for key in ("loss", "loss_hint", "loss_attn", "loss_rel", "alpha_kd", "temperature"):
            assert a[key] == pytest.approx(b[key], abs=1e-6), (a["step"], key)
    for name, value in full.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, atol=1e-6, rtol=0, msg=name)
    for name, value in full.hint_projections.state_dict().items():
        torch.testing.assert_close(resumed.hint_projections.state_dict()[name], value, atol=1e-6, rtol=0, msg=name)


def test_the_users_attention_implementation_is_left_as_it_is(tiny_classifier, tmp_path):
    """Switching a model to eager attention for the whole run (to get attention weights) slows every step and changes
    what the user configured; the capture must work under sdpa and leave both models' settings unchanged."""
    student = student_like(tiny_classifier)
    student.config._attn_implementation = "sdpa"
    tiny_classifier.config._attn_implementation = "sdpa"
    trainer = make_trainer(student, tiny_classifier, tmp_path, **LAYERS)
    logs = train_logs(trainer)
    assert all(torch.isfinite(torch.tensor(e["loss_attn"])) for e in logs)
    assert student.config._attn_implementation == tiny_classifier.config._attn_implementation == "sdpa"


def test_distilbert_models_distil_attention_and_relations(tmp_path):
    """DistilBERT names its projections q_lin/k_lin/v_lin; a lookup by BERT's names alone would refuse it or read
    nothing."""
    config = DistilBertConfig(
        vocab_size=99, dim=32, n_layers=2, n_heads=2, hidden_dim=37, max_position_embeddings=64, num_labels=3,
        dropout=0.0, attention_dropout=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    teacher = DistilBertForSequenceClassification(config).eval()
    trainer = make_trainer(copy.deepcopy(teacher), teacher, tmp_path, **LAYERS)
    _, parts = one_batch_loss(trainer, batch_of())
    assert parts["attn"] == pytest.approx(0.0, abs=1e-5) and parts["rel"] == pytest.approx(0.0, abs=1e-5)


# ---- refused before any work ---------------------------------------------------------------------------------------


def _refused(tmp_path, match, student, teacher, dataset=None, trainer_kwargs=None, **overrides):
    with pytest.raises(ValueError, match=match):
        DistillationTrainer(
            model=student,
            teacher_model=teacher,
            args=make_args(tmp_path, **overrides),
            train_dataset=dataset if dataset is not None else random_token_dataset(8),
            data_collator=pad_collate,
            **(trainer_kwargs or {}),
        )
    assert not os.path.exists(tmp_path / "out")


def test_layer_terms_from_cached_outputs_are_refused(tiny_classifier, tmp_path):
    """Cached outputs hold the logits and the last hidden state only; hints would have nothing to read."""
    cached = cache_teacher_outputs(tiny_classifier, random_token_dataset(8), hidden_states=True)
    _refused(tmp_path, "cached teacher outputs", student_like(tiny_classifier), None, dataset=cached, alpha_hint=1.0)


def test_attention_with_different_head_counts_is_refused(tiny_classifier, tmp_path):
    """TinyBERT pairs heads one to one; a 4-head student against a 2-head teacher cannot be paired."""
    torch.manual_seed(0)
    student = BertForSequenceClassification(tiny_bert_config(num_labels=3, num_hidden_layers=2, num_attention_heads=4))
    _refused(tmp_path, "4 heads and the teacher 2.*alpha_rel", student, tiny_classifier, alpha_attn=1.0)


def test_relation_heads_that_do_not_divide_the_hidden_sizes_are_refused(tiny_classifier, tmp_path):
    """A relation-head count that does not divide both widths cannot split them; the fix names a divisor."""
    _refused(tmp_path, "relation_heads=3 .*e.g. 2", narrow_student(), tiny_classifier, alpha_cos=0.0, alpha_rel=1.0,
             relation_heads=3)  # fmt: skip


def test_layer_map_beyond_the_student_is_refused(tiny_classifier, tmp_path):
    """Student layer 3 of a 2-layer student does not exist."""
    _refused(tmp_path, "student has 2 layers", student_like(tiny_classifier), tiny_classifier, alpha_hint=1.0,
             layer_map=["3:4"])  # fmt: skip


def test_unsupported_architectures_are_refused_for_attention_but_not_hints(tiny_classifier, tmp_path):
    """An architecture whose attention is not the product of separate projections (rotary, relative, fused) would be
    distilled from scores it never computes; hints need only hidden states and work."""
    from transformers import ModernBertConfig, ModernBertForSequenceClassification

    config = ModernBertConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
        max_position_embeddings=64, num_labels=3, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    teacher = ModernBertForSequenceClassification(config).eval()
    _refused(tmp_path, "supported for", copy.deepcopy(teacher), teacher, alpha_attn=1.0)
    trainer = make_trainer(copy.deepcopy(teacher), teacher, tmp_path, alpha_hint=1.0)
    _, parts = one_batch_loss(trainer, batch_of())
    assert parts["hint"] == pytest.approx(0.0, abs=1e-5)


def test_a_user_optimizer_with_projections_is_refused(tiny_classifier, tmp_path):
    """The projections are created by the trainer; a user optimizer cannot hold them, and they would never learn."""
    student = narrow_student()
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    _refused(tmp_path, "optimizer", student, tiny_classifier, alpha_cos=0.0, alpha_hint=1.0,
             trainer_kwargs=dict(optimizers=(optimizer, None)))  # fmt: skip


def test_layer_terms_with_an_ensemble_need_the_teacher_they_follow(tiny_classifier, tmp_path):
    """With several teachers, which one's layers the student follows must be said, not guessed."""
    second = copy.deepcopy(tiny_classifier)
    _refused(tmp_path, "cos_teacher", student_like(tiny_classifier), [tiny_classifier, second], alpha_cos=0.0,
             alpha_hint=1.0)  # fmt: skip


def test_reentrant_gradient_checkpointing_is_refused_for_attention_terms(tiny_classifier, tmp_path):
    """Reentrant checkpointing runs each layer without autograd, so the recorded queries and keys carry no gradient:
    the attention term would silently teach nothing (or the step would fail with a bare autograd error). The default,
    non-reentrant checkpointing must train with gradients from the term."""
    _refused(tmp_path, "use_reentrant", student_like(tiny_classifier), tiny_classifier, alpha_attn=1.0,
             gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": True})  # fmt: skip
    trainer = make_trainer(
        student_like(tiny_classifier), tiny_classifier, tmp_path, alpha_kd=0.0, alpha_task=0.0, alpha_cos=0.0,
        alpha_attn=1.0, gradient_checkpointing=True,
    )  # fmt: skip
    logs = train_logs(trainer)
    assert all(entry["grad_norm"] > 0 for entry in logs)


def test_roberta_students_of_another_width_distil_relations_and_hints(tmp_path):
    """MiniLMv2 needs no equal widths or head counts: a RoBERTa student of hidden 16 with 4 heads learns relations
    from a hidden-32, 2-head teacher (relation heads dividing both), and hints through projections; the terms are
    zero for a student equal to its teacher."""
    from transformers import RobertaConfig, RobertaForSequenceClassification

    def roberta(**overrides):
        values = dict(
            vocab_size=99, hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=37,
            max_position_embeddings=70, num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
            pad_token_id=0,
        )  # fmt: skip
        torch.manual_seed(0)
        return RobertaForSequenceClassification(RobertaConfig(**{**values, **overrides})).eval()

    teacher = roberta()
    trainer = make_trainer(copy.deepcopy(teacher), teacher, tmp_path / "same", **LAYERS)
    _, parts = one_batch_loss(trainer, batch_of())
    assert parts["rel"] == pytest.approx(0.0, abs=1e-5) and parts["attn"] == pytest.approx(0.0, abs=1e-5)
    student = roberta(hidden_size=16, num_attention_heads=4, intermediate_size=20, num_hidden_layers=2)
    trainer = make_trainer(
        student, teacher, tmp_path / "narrow", alpha_cos=0.0, alpha_hint=1.0, alpha_rel=1.0, relation_heads=2
    )
    logs = train_logs(trainer)
    assert all(entry["loss_rel"] > 0 and entry["loss_hint"] > 0 for entry in logs)
    assert trainer.layer_plan.relation_layers == (2, 4) and trainer.hint_projections is not None


def test_a_bf16_narrow_student_trains_through_fp32_projections(tiny_classifier, tmp_path):
    """A student cast to bf16 met fp32 projections with a dtype error at the first step."""
    student = narrow_student().to(torch.bfloat16)
    trainer = make_trainer(student, tiny_classifier, tmp_path, alpha_cos=0.0, alpha_hint=1.0, max_steps=2)
    logs = train_logs(trainer)
    assert all(torch.isfinite(torch.tensor(entry["loss_hint"])) for entry in logs)


def test_the_best_checkpoint_brings_its_projections(tiny_classifier, tmp_path):
    """`load_best_model_at_end` restored the best student but kept the last step's projections, so `save_model`
    wrote a pair that was never trained together."""
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    class EarlyBest(TrainerCallback):  # make the first evaluation the best one
        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            metrics["eval_loss"] = 0.0 if state.global_step == 2 else 1.0

    trainer = DistillationTrainer(
        model=narrow_student(),
        teacher_model=tiny_classifier,
        args=make_args(
            tmp_path,
            alpha_cos=0.0,
            alpha_hint=1.0,
            max_steps=6,
            eval_strategy="steps",
            eval_steps=2,
            save_strategy="steps",
            save_steps=2,
            load_best_model_at_end=True,
        ),  # fmt: skip
        train_dataset=random_token_dataset(32),
        eval_dataset=random_token_dataset(8, seed=5),
        data_collator=pad_collate,
        callbacks=[EarlyBest()],
    )
    trainer.train()
    assert trainer.state.best_model_checkpoint.endswith("checkpoint-2")
    best = load_file(os.path.join(trainer.state.best_model_checkpoint, PROJECTIONS_NAME))
    for name, value in trainer.hint_projections.state_dict().items():
        torch.testing.assert_close(value, best[name], msg=name)


def test_layer_terms_switched_after_construction(tiny_classifier, tmp_path):
    """The layer plan is made when the trainer is built: a term switched on later was dropped silently, and one
    switched off failed with a message about missing hidden states. On: a clear error; off: it is not computed."""
    trainer = make_trainer(student_like(tiny_classifier), tiny_classifier, tmp_path / "on")
    trainer.args.alpha_hint = 1.0
    with pytest.raises(ValueError, match="after the DistillationTrainer was built"):
        trainer.train()
    trainer = make_trainer(student_like(tiny_classifier), tiny_classifier, tmp_path / "off", alpha_hint=1.0)
    trainer.args.alpha_hint = 0.0
    logs = train_logs(trainer)
    assert logs and not any("loss_hint" in entry for entry in logs)


def test_a_term_warmed_up_from_zero_may_be_the_only_one(tiny_classifier, tmp_path):
    """Every weight at 0 with one scheduled up from 0 was refused as 'nothing to train on'; it trains, from 0."""
    trainer = make_trainer(
        student_like(tiny_classifier), tiny_classifier, tmp_path, alpha_kd=0.0, alpha_task=0.0, alpha_cos=0.0,
        alpha_hint=0.0, schedules=["alpha_hint:1"],
    )  # fmt: skip
    logs = train_logs(trainer)
    assert logs[0]["alpha_hint"] == 0.0 and logs[-1]["alpha_hint"] == 1.0 and logs[-1]["loss"] > 0


def test_layer_map_spellings_and_an_ignored_hint_embeddings_flag():
    """`--layer_map 1:2,2:4` (one shell word) was refused while Python accepted the same string; and
    `hint_embeddings=True` beside an explicit map was dropped without a word."""
    from transformers import HfArgumentParser

    from hf_distill import DistillationTrainingArguments

    (args,) = HfArgumentParser(DistillationTrainingArguments).parse_args_into_dataclasses(
        ["--output_dir", "unused", "--layer_map", "1:2,2:4"]
    )
    assert args.layer_map == ["1:2", "2:4"]
    with pytest.raises(ValueError, match="add '0:0' to layer_map"):
        DistillationTrainingArguments(output_dir="unused", layer_map=["1:2"], hint_embeddings=True)
