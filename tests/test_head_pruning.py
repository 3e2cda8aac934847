"""Tests for `hf_distill.head_pruning`: Michel et al.'s head importance, global head selection, physical pruning and
reloading pruned checkpoints."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader
from transformers import (
    AutoModelForSequenceClassification,
    BertForSequenceClassification,
    CamembertConfig,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    ElectraConfig,
    RobertaConfig,
    XLMRobertaConfig,
)

from hf_distill.head_pruning import SUPPORTED_MODEL_TYPES, head_importance, heads_to_prune, load_pruned, prune_heads

from .conftest import VOCAB_SIZE, pad_collate, random_token_dataset, tiny_bert_config

HEAD_SIZE = 8  # hidden size 32 over 4 heads


def _four_head_classifier(seed: int = 0, **overrides) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    return BertForSequenceClassification(tiny_bert_config(num_attention_heads=4, num_labels=3, **overrides)).eval()


def _inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, VOCAB_SIZE, (3, 9), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, 6:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def _loader(num_rows: int = 16, batch_size: int = 4, **kwargs) -> DataLoader:
    return DataLoader(random_token_dataset(num_rows, **kwargs), batch_size=batch_size, collate_fn=pad_collate)


def _layers(model):
    return model.base_model.encoder.layer


def _silence_heads(model, heads: dict[int, list[int]], head_size: int = HEAD_SIZE) -> None:
    """The masking reference: zero the output projection's input columns of each head, so its output is dropped."""
    with torch.no_grad():
        for layer, ids in heads.items():
            dense = _layers(model)[layer].attention.output.dense
            for head in ids:
                dense.weight[:, head * head_size : (head + 1) * head_size] = 0


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def _assert_same_state(before: dict[str, torch.Tensor], model) -> None:
    after = model.state_dict()
    assert list(after) == list(before)
    for key, value in before.items():
        assert after[key].shape == value.shape, key
        assert torch.equal(after[key], value), key


def _tiny_encoder(model_type: str):
    sizes = dict(
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=37,
        vocab_size=VOCAB_SIZE,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=3,
    )
    if model_type == "bert":
        config = tiny_bert_config(**sizes)
    elif model_type == "electra":
        config = ElectraConfig(embedding_size=16, **sizes)
    else:
        config_class = {"roberta": RobertaConfig, "xlm-roberta": XLMRobertaConfig, "camembert": CamembertConfig}
        config = config_class[model_type](pad_token_id=1, **sizes)
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(config).eval()


# ---------------------------------------------------------------------------------------------------------------------
# prune_heads
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_pruning_equals_masking_the_heads(attn_implementation):
    """Removing the rows of the wrong heads (an off-by-one in the row index, or per-dim instead of per-head blocks)
    gives a model that runs but computes something else than the masked original; with `sdpa` or `eager` alike."""
    heads = {0: [1, 2], 2: [0], 3: [3]}
    model = _four_head_classifier()
    model.config._attn_implementation = attn_implementation
    reference = copy.deepcopy(model)
    _silence_heads(reference, heads)
    with torch.no_grad():
        expected = reference(**_inputs()).logits
        unmasked = model(**_inputs()).logits
        prune_heads(model, heads)
        pruned = model(**_inputs()).logits
    assert not torch.allclose(unmasked, expected, atol=1e-4)  # the masked heads matter, so the check can fail
    torch.testing.assert_close(pruned, expected, atol=1e-6, rtol=1e-5)


def test_shapes_and_config_record():
    """A pruned module whose `num_attention_heads`/`all_head_size` is stale, or a map that is not recorded in the
    config, breaks reloading and any later pruning."""
    model = _four_head_classifier()
    prune_heads(model, {2: [3, 0], 1: [1]})
    for index, kept in enumerate([4, 3, 2, 4]):
        attention = _layers(model)[index].attention
        for name in ("query", "key", "value"):
            assert getattr(attention.self, name).weight.shape == (kept * HEAD_SIZE, 32)
            assert getattr(attention.self, name).bias.shape == (kept * HEAD_SIZE,)
        assert attention.output.dense.weight.shape == (32, kept * HEAD_SIZE)
        assert attention.output.dense.bias.shape == (32,)
        assert attention.self.num_attention_heads == kept
        assert attention.self.all_head_size == kept * HEAD_SIZE
    assert model.config.pruned_heads == {"1": [1], "2": [0, 3]}
    json.dumps(model.config.to_dict())  # JSON-safe
    assert model.config.num_attention_heads == 4  # the original count, which the original ids refer to


def test_second_pruning_uses_original_ids():
    """After a first pruning the surviving heads move to new positions; treating the given ids as positions would cut
    the wrong head the second time."""
    model = _four_head_classifier()
    reference = copy.deepcopy(model)
    _silence_heads(reference, {0: [0, 2], 1: [3]})
    prune_heads(model, {0: [0]})
    prune_heads(model, {0: [2], 1: [3]})
    assert model.config.pruned_heads == {"0": [0, 2], "1": [3]}
    with torch.no_grad():
        torch.testing.assert_close(model(**_inputs()).logits, reference(**_inputs()).logits, atol=1e-6, rtol=1e-5)


def test_pruning_keeps_dtype_mode_and_frozen_flags():
    """`prune_linear_layer` returns a float32 layer in train mode that requires grad; passed on as is, a bf16 model
    becomes mixed-precision and a frozen or eval-mode model silently changes."""
    model = _four_head_classifier().to(torch.bfloat16)
    model.bert.encoder.layer[0].requires_grad_(False)
    prune_heads(model, {0: [1], 1: [2]})
    for name, parameter in model.named_parameters():
        assert parameter.dtype == torch.bfloat16, name
        assert parameter.requires_grad == (not name.startswith("bert.encoder.layer.0.")), name
    assert not any(module.training for module in model.modules())


def test_empty_map_is_a_no_op():
    """An empty map (e.g. `heads_to_prune` with nothing left to do) must not fail or record anything."""
    model = _four_head_classifier()
    before = _snapshot(model)
    assert prune_heads(model, {}) is model
    assert prune_heads(model, {1: []}) is model
    _assert_same_state(before, model)
    assert not getattr(model.config, "pruned_heads", None)


@pytest.mark.parametrize(
    ("heads", "error", "match"),
    [
        ({4: [0]}, ValueError, r"Layer 4 .*out of range.*0\.\.3"),
        ({-1: [0]}, ValueError, r"Layer -1 .*out of range"),
        ({0: [4]}, ValueError, r"Head 4 .*out of range.*0\.\.3"),
        ({0: [-1]}, ValueError, r"Head -1 .*out of range"),
        ({0: [1, 1]}, ValueError, r"more than once"),
        ({0: [2], 1: [2]}, ValueError, r"Head 2 of layer 1 is already pruned"),
        ({1: [0, 1, 3]}, ValueError, r"every remaining head.*keep at least one head per layer"),
        ({2: [0, 1, 2, 3]}, ValueError, r"keep at least one head per layer"),
        ({"0": [1]}, TypeError, r"Layer indices .* must be ints.*int\(k\)"),
        ({0: [1.0]}, TypeError, r"Head ids must be ints"),
        ({0: [True]}, TypeError, r"Head ids must be ints"),
        ({0: 1}, TypeError, r"iterable of head ids"),
        ({0: "1"}, TypeError, r"iterable of head ids"),
        ([(0, [1])], TypeError, r"mapping"),
        ({3: [0], 0: [9]}, ValueError, r"Head 9"),  # a valid entry first: nothing may be applied before the error
    ],
)
def test_bad_heads_raise_before_changing_the_model(heads, error, match):
    """A check done while pruning, rather than before, leaves a half-pruned model whose config no longer matches its
    shapes. Layer 1 is already missing head 2 (so "already pruned" and "every remaining head" can be hit)."""
    model = _four_head_classifier()
    prune_heads(model, {1: [2]})
    before = _snapshot(model)
    with pytest.raises(error, match=match):
        prune_heads(model, heads)
    _assert_same_state(before, model)
    assert model.config.pruned_heads == {"1": [2]}


def test_removing_the_last_remaining_heads_is_refused():
    """Across two calls the heads of a layer can all go one by one; the check must count heads already pruned."""
    model = _four_head_classifier()
    prune_heads(model, {0: [0, 1]})
    with pytest.raises(ValueError, match=r"every remaining head \(\[2, 3\]\); keep at least one head per layer"):
        prune_heads(model, {0: [2, 3]})


@pytest.mark.parametrize("model_type", ["bert", "roberta", "electra", "xlm-roberta", "camembert"])
def test_supported_encoders_prune_like_masking(model_type):
    """Every type in SUPPORTED_MODEL_TYPES must really have the layout the pruning assumes; a type added on trust
    could prune the wrong rows."""
    assert model_type in SUPPORTED_MODEL_TYPES
    model = _tiny_encoder(model_type)
    heads = {0: [3], 2: [0, 1]}
    reference = copy.deepcopy(model)
    _silence_heads(reference, heads)
    prune_heads(model, heads)
    with torch.no_grad():
        torch.testing.assert_close(model(**_inputs()).logits, reference(**_inputs()).logits, atol=1e-6, rtol=1e-5)


def test_every_supported_type_is_tested():
    """A model type added to SUPPORTED_MODEL_TYPES without a layout test would be accepted unchecked."""
    assert set(SUPPORTED_MODEL_TYPES) == {"bert", "roberta", "electra", "xlm-roberta", "camembert"}


def test_unsupported_models_are_refused_clearly():
    """DistilBERT names its projections differently (`q_lin`); a plain module or a decoder with cross-attention has
    no place to prune. Each must fail with a message naming the type, not an AttributeError deep inside."""
    torch.manual_seed(0)
    distilbert = DistilBertForSequenceClassification(
        DistilBertConfig(vocab_size=VOCAB_SIZE, dim=32, n_layers=2, n_heads=2, hidden_dim=37)
    )
    before = _snapshot(distilbert)
    with pytest.raises(ValueError, match=r"DistilBertForSequenceClassification.*'distilbert'.*Supported.*bert"):
        prune_heads(distilbert, {0: [0]})
    with pytest.raises(ValueError, match=r"'distilbert'"):
        head_importance(distilbert, _loader())
    _assert_same_state(before, distilbert)

    with pytest.raises(TypeError, match=r"PreTrainedModel.*got Linear"):
        prune_heads(torch.nn.Linear(2, 2), {0: [0]})

    decoder = BertForSequenceClassification(tiny_bert_config(is_decoder=True, add_cross_attention=True))
    with pytest.raises(ValueError, match=r"encoders only.*decoder"):
        prune_heads(decoder, {0: [0]})


@pytest.mark.parametrize("fixture", ["tiny_mlm", "tiny_tagger", "tiny_qa"])
def test_other_heads_prune(fixture, request):
    """Pruning must work whatever the task head on the encoder (masked LM with tied embeddings, tagging, QA)."""
    model = request.getfixturevalue(fixture)
    reference = copy.deepcopy(model)
    _silence_heads(reference, {1: [0]}, head_size=16)
    prune_heads(model, {1: [0]})
    with torch.no_grad():
        got, expected = model(**_inputs()), reference(**_inputs())
    for key in expected.keys():
        torch.testing.assert_close(got[key], expected[key], atol=1e-6, rtol=1e-5)


def test_pruned_model_trains():
    """Replaced layers that are not registered as parameters, or lost `requires_grad`, would freeze the pruned
    attention: an optimizer step must reach them and lower the loss."""
    model = _four_head_classifier().train()
    prune_heads(model, {0: [1, 2], 3: [0]})
    batch = pad_collate(list(random_token_dataset(8)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    query = model.bert.encoder.layer[0].attention.self.query.weight
    start = query.detach().clone()
    first = model(**batch).loss
    first.backward()
    assert query.grad is not None and query.grad.shape == (16, 32)
    optimizer.step()
    assert not torch.equal(query, start)
    with torch.no_grad():
        assert model(**batch).loss < first


# ---------------------------------------------------------------------------------------------------------------------
# load_pruned
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["tiny_classifier", "tiny_mlm"])
def test_save_and_load_pruned_round_trip(fixture, request, tmp_path):
    """Plain `from_pretrained` rebuilds the unpruned shapes and refuses (or, with `ignore_mismatched_sizes`, silently
    re-initialises) the pruned weights; `load_pruned` must give back the same logits, class and record. The masked LM
    stores its tied decoder weight once, which the strict check must accept."""
    model = request.getfixturevalue(fixture)
    prune_heads(model, {0: [1], 3: [0]})
    model.save_pretrained(tmp_path)
    with pytest.raises(RuntimeError, match="mismatch"):
        type(model).from_pretrained(tmp_path)

    loaded = load_pruned(tmp_path)
    assert type(loaded) is type(model)
    assert loaded.config.pruned_heads == {"0": [1], "3": [0]}
    assert not loaded.training
    with torch.no_grad():
        for key, value in model(**_inputs()).items():
            assert torch.equal(loaded(**_inputs())[key], value), key
    again = load_pruned(str(tmp_path), AutoModelForSequenceClassification) if fixture == "tiny_classifier" else None
    if again is not None:
        assert type(again) is BertForSequenceClassification


def test_load_pruned_keeps_the_saved_dtype(tmp_path):
    """Building from the config in the default float32 would silently upcast a bf16 checkpoint; an explicit dtype
    must still win."""
    model = _four_head_classifier().to(torch.bfloat16)
    prune_heads(model, {1: [0, 3]})
    model.save_pretrained(tmp_path)
    loaded = load_pruned(tmp_path)
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    _assert_same_state(_snapshot(model), loaded)
    assert {p.dtype for p in load_pruned(tmp_path, dtype=torch.float32).parameters()} == {torch.float32}


def test_load_pruned_without_pruning_is_from_pretrained(tmp_path, tiny_classifier):
    """A directory that was never pruned must load exactly like `from_pretrained`, with its keyword arguments."""
    tiny_classifier.save_pretrained(tmp_path)
    loaded = load_pruned(Path(tmp_path), dtype=torch.float64)
    assert type(loaded) is BertForSequenceClassification
    assert {p.dtype for p in loaded.parameters()} == {torch.float64}
    reference = BertForSequenceClassification.from_pretrained(tmp_path, dtype=torch.float64)
    _assert_same_state(_snapshot(reference), loaded)


def test_load_pruned_is_strict(tmp_path):
    """A config whose pruned map no longer matches the weights must fail loudly, not load with re-initialised rows."""
    model = _four_head_classifier()
    prune_heads(model, {0: [1, 2]})
    model.save_pretrained(tmp_path)
    config_file = tmp_path / "config.json"
    config = json.loads(config_file.read_text())
    config["pruned_heads"] = {"0": [1]}
    config_file.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"do not match the pruned model.*shape mismatches.*layer\.0\.attention"):
        load_pruned(tmp_path)


def test_load_pruned_argument_errors(tmp_path):
    """Unsupported keyword arguments for a pruned checkpoint must not be dropped silently; a bad path type or missing
    class must say what to pass."""
    model = _four_head_classifier()
    prune_heads(model, {0: [1]})
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["architectures"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
        load_pruned(123)
    with pytest.raises(ValueError, match="Pass model_class"):
        load_pruned(tmp_path)
    with pytest.raises(ValueError, match=r"does not support \['device_map'\]"):
        load_pruned(tmp_path, BertForSequenceClassification, device_map="cpu")
    assert load_pruned(tmp_path, BertForSequenceClassification).config.pruned_heads == {"0": [1]}


# ---------------------------------------------------------------------------------------------------------------------
# head_importance
# ---------------------------------------------------------------------------------------------------------------------


def test_importance_shape_norm_and_side_effects(tiny_classifier):
    """Importance must not leave gate hooks behind, touch existing `.grad`s, change weights or the train/eval mode of
    any module, and each layer must be L2-normalised as in Michel et al."""
    model = tiny_classifier.train()
    model.bert.embeddings.eval()  # a mixed-mode model must come back mixed
    parameters = dict(model.named_parameters())
    for parameter in list(parameters.values())[::2]:
        parameter.grad = torch.randn_like(parameter)
    grads = {name: None if p.grad is None else p.grad.clone() for name, p in parameters.items()}
    modes = {name: module.training for name, module in model.named_modules()}
    before = _snapshot(model)

    importance = head_importance(model, _loader())

    assert importance.shape == (4, 2)
    assert importance.dtype == torch.float32 and importance.device.type == "cpu"
    torch.testing.assert_close(importance.norm(dim=1), torch.ones(4))
    assert (importance > 0).all()
    for name, parameter in model.named_parameters():
        if grads[name] is None:
            assert parameter.grad is None, name
        else:
            assert torch.equal(parameter.grad, grads[name]), name
    assert {name: module.training for name, module in model.named_modules()} == modes
    assert all(not module._forward_pre_hooks for module in model.modules())
    _assert_same_state(before, model)


def test_importance_matches_finite_differences():
    """The golden value: ∂L/∂ξ_h computed independently, by scaling head h's input columns of the output projection
    by 1 ± ε. A gate repeated per head instead of per dim, or a missing abs, gives other scores."""
    model = _four_head_classifier(num_hidden_layers=2).double()
    batch = pad_collate(list(random_token_dataset(6, seed=3)))
    importance = head_importance(model, [batch])

    eps = 1e-5
    for layer in range(2):
        dense = _layers(model)[layer].attention.output.dense
        grads = []
        for head in range(4):
            columns = slice(head * HEAD_SIZE, (head + 1) * HEAD_SIZE)
            losses = []
            for scale in (1 + eps, 1 - eps):
                probe = copy.deepcopy(model)
                with torch.no_grad():
                    _layers(probe)[layer].attention.output.dense.weight[:, columns] = dense.weight[:, columns] * scale
                    losses.append(probe(**batch).loss.item())
            grads.append(abs(losses[0] - losses[1]) / (2 * eps))
        expected = torch.tensor(grads) / math.sqrt(sum(g * g for g in grads))
        torch.testing.assert_close(importance[layer], expected.float(), atol=1e-4, rtol=1e-3)


def test_useless_head_has_no_importance():
    """A head whose values are all zero outputs nothing, so the loss cannot depend on its gate; scoring it above zero
    would make it look worth keeping."""
    model = _four_head_classifier()
    value = model.bert.encoder.layer[1].attention.self.value
    with torch.no_grad():
        value.weight[2 * HEAD_SIZE : 3 * HEAD_SIZE] = 0
        value.bias[2 * HEAD_SIZE : 3 * HEAD_SIZE] = 0
    importance = head_importance(model, _loader())
    assert importance[1, 2].item() == pytest.approx(0.0, abs=1e-6)
    assert (importance[1, [0, 1, 3]] > 0.05).all()


def test_importance_of_pruned_model_keeps_original_ids():
    """Scores of a pruned model indexed by current position would point `heads_to_prune` at the wrong heads; pruned
    heads must be nan at their original ids and the others must keep their scores' order."""
    model = _four_head_classifier()
    reference = copy.deepcopy(model)
    _silence_heads(reference, {0: [1], 2: [0, 3]})
    prune_heads(model, {0: [1], 2: [0, 3]})
    loader = _loader()
    importance = head_importance(model, loader)
    expected = head_importance(reference, loader)
    assert importance.isnan().nonzero().tolist() == [[0, 1], [2, 0], [2, 3]]
    expected[0, 1] = expected[2, 0] = expected[2, 3] = float("nan")
    expected = expected / expected.nan_to_num(0).norm(dim=1, keepdim=True)
    torch.testing.assert_close(importance, expected, equal_nan=True, atol=1e-5, rtol=1e-4)


def test_importance_respects_max_batches():
    """`max_batches` must stop the loop (a fixed sample on a large dataloader), not be ignored."""
    model = _four_head_classifier()
    batches = list(_loader(num_rows=12))
    seen = []

    def counting():
        for batch in batches:
            seen.append(batch)
            yield batch

    limited = head_importance(model, counting(), max_batches=1)
    assert len(seen) == 1
    torch.testing.assert_close(limited, head_importance(model, batches[:1]))
    with pytest.raises(ValueError, match="max_batches must be a positive int"):
        head_importance(model, batches, max_batches=0)


def test_importance_errors_leave_no_hooks():
    """Without labels there is no loss to differentiate; the error must say so and still remove the gate hooks, which
    would otherwise keep scaling the heads of the user's model."""
    model = _four_head_classifier()
    unlabeled = _loader(label_kind=None)
    with pytest.raises(ValueError, match="returned no loss.*labels"):
        head_importance(model, unlabeled)
    assert all(not module._forward_pre_hooks for module in model.modules())
    with pytest.raises(ValueError, match="no batches"):
        head_importance(model, [])
    with pytest.raises(TypeError, match="mapping"):
        head_importance(model, [[1, 2]])
    assert all(not module._forward_pre_hooks for module in model.modules())


# ---------------------------------------------------------------------------------------------------------------------
# heads_to_prune
# ---------------------------------------------------------------------------------------------------------------------


def test_heads_to_prune_is_global_and_keeps_one_per_layer():
    """Per-layer selection (the same count everywhere) is not Michel's global pruning; and a layer whose heads are all
    the least important must still keep its best head."""
    importance = torch.tensor(
        [
            [0.01, 0.02, 0.03, 0.04],
            [0.9, 0.8, 0.7, 0.6],
            [0.5, 0.05, 0.95, 0.06],
        ]
    )
    assert heads_to_prune(importance, 0.25) == {0: [0, 1, 2]}
    assert heads_to_prune(importance, 0.5) == {0: [0, 1, 2], 2: [0, 1, 3]}  # not one of layer 1's
    selected = heads_to_prune(importance, 0.75)  # 9 of 12: the most that keeps one head per layer
    assert selected == {0: [0, 1, 2], 1: [1, 2, 3], 2: [0, 1, 3]}
    assert all(isinstance(layer, int) and all(isinstance(h, int) for h in heads) for layer, heads in selected.items())


def test_heads_to_prune_on_pruned_scores_targets_the_original_count():
    """nan entries are already pruned: they must not be picked again, and `fraction` is the share of the original heads
    pruned in the end, so asking for less than is already gone is an error rather than a silent no-op."""
    importance = torch.tensor([[float("nan"), 0.1, 0.9, 0.2], [0.3, float("nan"), 0.8, 0.4]])
    assert heads_to_prune(importance, 0.5) == {0: [1, 3]}  # 4 of 8 in the end: 2 more
    assert heads_to_prune(importance, 0.25) == {}
    with pytest.raises(ValueError, match=r"2 are already pruned.*fraction above 0\.25"):
        heads_to_prune(importance, 0.125)


def test_heads_to_prune_round_trip_with_prune_heads():
    """The selection must be directly usable by `prune_heads`, also a second time on the pruned model's new scores."""
    model = _four_head_classifier()
    loader = _loader()
    prune_heads(model, heads_to_prune(head_importance(model, loader), 0.25))
    assert sum(map(len, model.config.pruned_heads.values())) == 4
    prune_heads(model, heads_to_prune(head_importance(model, loader), 0.5))
    assert sum(map(len, model.config.pruned_heads.values())) == 8
    assert all(len(removed) <= 3 for removed in model.config.pruned_heads.values())


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, float("nan"), float("inf"), True, "0.5", None])
def test_heads_to_prune_rejects_bad_fractions(fraction):
    """fraction=1 would empty the model and a nan fraction would compare false everywhere; both must be refused."""
    with pytest.raises(ValueError, match=r"fraction must be a finite number strictly between 0 and 1"):
        heads_to_prune(torch.ones(2, 2), fraction)


def test_heads_to_prune_refuses_more_heads_than_exist():
    """Asking for more heads than can go while keeping one per layer must name the numbers and the largest usable
    fraction, not return fewer heads than asked."""
    with pytest.raises(ValueError, match=r"pruning more heads than exist.*7 of 8 heads.*at most 6.*at most 0\.75"):
        heads_to_prune(torch.rand(2, 4), 0.85)
    with pytest.raises(ValueError, match=r"shape \(num_layers, num_heads\)"):
        heads_to_prune(torch.rand(4), 0.5)
    with pytest.raises(ValueError, match="infinite"):
        heads_to_prune(torch.tensor([[1.0, float("inf")]]), 0.5)
    with pytest.raises(ValueError, match=r"every head of layer\(s\) \[1\]"):
        heads_to_prune(torch.tensor([[1.0, 2.0], [float("nan"), float("nan")]]), 0.5)
