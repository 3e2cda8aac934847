"""Tests for `hf_distill.student.make_student`.

Every teacher is a tiny random model built in process (no network). Each is built once, its weights are nudged with
noise so that no two tensors are equal by construction (fresh LayerNorms are all ones, fresh biases all zeros), and
each test gets a deep copy.
"""

from __future__ import annotations

import copy
import functools
import math
import re
from fractions import Fraction

import pytest
import torch
import transformers
from torch import nn
from transformers import (
    AlbertConfig,
    AlbertModel,
    BertForMaskedLM,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedModel,
    T5Config,
    T5EncoderModel,
)
from transformers.models.auto import configuration_auto, modeling_auto

from hf_distill import student as student_module
from hf_distill.student import SUPPORTED_MODEL_TYPES, make_student

TINY = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 37, "vocab_size": 99}
MAX_POSITIONS = 64
BATCH, SEQ, CHOICES = 2, 8, 2

# Extra settings per model type that switch on the parts outside the layer stack (relative-position tables, an
# embedding projection, a convolution after the first layer), so that a remap that forgets them fails.
EXTRA_CONFIG: dict[str, dict] = {
    "albert": {"embedding_size": 16},
    "electra": {"embedding_size": 16},
    "deberta": {"relative_attention": True, "pos_att_type": ["c2p", "p2c"], "max_relative_positions": 16},
    "deberta-v2": {
        "relative_attention": True,
        "pos_att_type": ["c2p", "p2c"],
        "position_buckets": 8,
        "norm_rel_ebd": "layer_norm",
        "conv_kernel_size": 3,
        "share_att_key": True,
    },
    # local_attention=4 gives a sliding window shorter than SEQ, so sliding and global layers really differ.
    "modernbert": {
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "cls_token_id": 1,
        "sep_token_id": 2,
        "local_attention": 4,
    },
}

HEAD_TABLES = {
    "Model": "MODEL_MAPPING_NAMES",
    "ForMaskedLM": "MODEL_FOR_MASKED_LM_MAPPING_NAMES",
    "ForSequenceClassification": "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",
    "ForTokenClassification": "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES",
    "ForQuestionAnswering": "MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES",
    "ForMultipleChoice": "MODEL_FOR_MULTIPLE_CHOICE_MAPPING_NAMES",
}


def model_class(model_type: str, head: str) -> type[PreTrainedModel] | None:
    name = getattr(modeling_auto, HEAD_TABLES[head]).get(model_type)
    return getattr(transformers, name) if name else None


ARCH_HEADS = [
    pytest.param(model_type, head, id=f"{model_type}-{head}")
    for model_type in SUPPORTED_MODEL_TYPES
    for head in HEAD_TABLES
    if model_class(model_type, head) is not None
]
MLM_ARCHS = [model_type for model_type in SUPPORTED_MODEL_TYPES if model_class(model_type, "ForMaskedLM")]


def tiny_config(model_type: str, num_layers: int = 4, **overrides):
    if model_type == "distilbert":
        kwargs = {"dim": 32, "n_layers": num_layers, "n_heads": 2, "hidden_dim": 37, "vocab_size": 99}
    else:
        kwargs = {**TINY, "num_hidden_layers": num_layers}
    kwargs.update(EXTRA_CONFIG.get(model_type, {}), max_position_embeddings=MAX_POSITIONS, **overrides)
    return configuration_auto.CONFIG_MAPPING[model_type](**kwargs)


@functools.cache
def _cached_teacher(model_type: str, head: str, num_layers: int, overrides: tuple) -> PreTrainedModel:
    torch.manual_seed(0)
    model = model_class(model_type, head)(tiny_config(model_type, num_layers, **dict(overrides)))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    return model.eval()


def teacher_for(model_type: str, head: str = "ForSequenceClassification", num_layers: int = 4, **overrides):
    """A deep copy of a cached tiny teacher, in eval mode."""
    return copy.deepcopy(_cached_teacher(model_type, head, num_layers, tuple(sorted(overrides.items()))))


def inputs_for(model: PreTrainedModel) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(3, TINY["vocab_size"], (BATCH, SEQ), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, SEQ - 3 :] = 0  # padding on the second row
    if type(model).__name__.endswith("ForMultipleChoice"):
        input_ids = input_ids[:, None].repeat(1, CHOICES, 1)
        attention_mask = attention_mask[:, None].repeat(1, CHOICES, 1)
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def outputs(model: PreTrainedModel) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs_for(model))[0]


def expected_shape(model: PreTrainedModel) -> tuple[int, ...]:
    head = type(model).__name__
    config = model.config
    if head.endswith("ForMaskedLM"):
        return (BATCH, SEQ, config.vocab_size)
    if head.endswith("ForSequenceClassification"):
        return (BATCH, config.num_labels)
    if head.endswith("ForTokenClassification"):
        return (BATCH, SEQ, config.num_labels)
    if head.endswith("ForQuestionAnswering"):
        return (BATCH, SEQ)
    if head.endswith("ForMultipleChoice"):
        return (BATCH, CHOICES)
    return (BATCH, SEQ, config.hidden_size)


def stack_name(model: PreTrainedModel, num_layers: int) -> str | None:
    """The layer stack found independently of `make_student`: the one `ModuleList` with an entry per layer."""
    if model.config.model_type == "albert":
        return None
    names = [n for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) == num_layers]
    assert len(names) == 1, names
    return names[0]


def teacher_key(key: str, stack: str | None, kept: list[int]) -> str:
    """The teacher key a student key must have been copied from."""
    if stack is None or not key.startswith(f"{stack}."):
        return key
    index, rest = key[len(stack) + 1 :].split(".", 1)
    return f"{stack}.{kept[int(index)]}.{rest}"


def all_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and every buffer, persistent or not, by name."""
    return {
        **dict(model.named_parameters(remove_duplicate=False)),
        **dict(model.named_buffers(remove_duplicate=False)),
    }


def assert_copied_from(student: PreTrainedModel, teacher: PreTrainedModel, kept: list[int]) -> None:
    """Every student tensor equals its teacher tensor (layer `i` from layer `kept[i]`) and shares no storage."""
    stack = stack_name(teacher, teacher.config.num_hidden_layers)
    teacher_tensors, student_tensors = all_tensors(teacher), all_tensors(student)
    teacher_pointers = {t.data_ptr() for t in teacher_tensors.values() if t.numel()}
    for key, tensor in student_tensors.items():
        source = teacher_tensors[teacher_key(key, stack, kept)]
        assert tensor.dtype == source.dtype and tensor.device == source.device, key
        assert torch.equal(tensor, source), key
        assert tensor.numel() == 0 or tensor.data_ptr() not in teacher_pointers, f"{key} shares storage"


def snapshot(model: PreTrainedModel) -> tuple[dict[str, torch.Tensor], dict]:
    return {k: v.clone() for k, v in all_tensors(model).items()}, model.config.to_dict()


@pytest.fixture
def no_build(monkeypatch):
    """Fail if a student gets built, so that an error test also proves its check runs before any building."""

    def fail(*args, **kwargs):
        raise AssertionError("the student was built before the arguments were checked")

    monkeypatch.setattr(student_module, "_copy_model", fail)


# ---------------------------------------------------------------------------------------------------------------------
# Every architecture x head
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("model_type", "head"), ARCH_HEADS)
def test_student_copies_every_tensor(model_type, head):
    """A remap that drops the pooler, a relative-position table or a buffer would leave it randomly initialised (or
    shared with the teacher) while a layers-only check still passes."""
    teacher = teacher_for(model_type, head)
    student = make_student(teacher)

    assert type(student) is type(teacher)
    assert student.config.num_hidden_layers == 2
    assert student.config.distillation == {
        "teacher": None,
        "teacher_layers": [0, 1] if model_type == "albert" else [0, 2],
        "teacher_num_layers": 4,
    }
    kept = student.config.distillation["teacher_layers"]
    if model_type != "albert":
        assert len(student.get_submodule(stack_name(teacher, 4))) == 2
    assert_copied_from(student, teacher, kept)
    assert all(p.requires_grad for p in student.parameters())


@pytest.mark.parametrize(("model_type", "head"), ARCH_HEADS)
def test_student_forward_and_round_trip(model_type, head, tmp_path):
    """A student that runs but gives the wrong shape, or whose layer count or distillation record is lost on
    `save_pretrained`/`from_pretrained`, cannot be trained and reloaded."""
    student = make_student(teacher_for(model_type, head))
    logits = outputs(student)
    assert logits.shape == expected_shape(student)
    assert torch.isfinite(logits).all()

    student.save_pretrained(tmp_path)
    reloaded = type(student).from_pretrained(tmp_path).eval()
    assert reloaded.config.distillation == student.config.distillation
    assert reloaded.config.num_hidden_layers == student.config.num_hidden_layers
    assert torch.equal(outputs(reloaded), logits)


@pytest.mark.parametrize(("model_type", "head"), ARCH_HEADS)
def test_student_with_every_layer_reproduces_teacher(model_type, head):
    """The strongest end-to-end check: keeping every layer must give the teacher's logits bit for bit, which fails for
    any tensor copied wrongly, any config field lost, or any layer built with the wrong attention type."""
    teacher = teacher_for(model_type, head)
    for student in (make_student(teacher, num_layers=4), make_student(teacher, layers=[0, 1, 2, 3])):
        assert student.config.distillation["teacher_layers"] == [0, 1, 2, 3]
        assert torch.equal(outputs(student), outputs(teacher))


@pytest.mark.parametrize("model_type", SUPPORTED_MODEL_TYPES)
def test_student_matches_module_surgery(model_type):
    """Skipping layers must compute what deleting them from the teacher's `ModuleList` computes (the sentence-
    transformers recipe); a student whose layers are copied in the wrong order or with the wrong per-layer config
    (ModernBERT's attention types) computes something else."""
    teacher = teacher_for(model_type, "ForMaskedLM" if model_class(model_type, "ForMaskedLM") else "Model")
    if model_type == "albert":
        student = make_student(teacher, num_layers=3)
        reference = copy.deepcopy(teacher)
        reference.config.num_hidden_layers = 3
    else:
        student = make_student(teacher, layers=[0, 3])
        reference = copy.deepcopy(teacher)
        parent, _, name = stack_name(reference, 4).rpartition(".")
        stack = reference.get_submodule(stack_name(reference, 4))
        setattr(reference.get_submodule(parent), name, nn.ModuleList([stack[0], stack[3]]))
        reference.config.num_hidden_layers = 2
    assert torch.equal(outputs(student), outputs(reference))


# ---------------------------------------------------------------------------------------------------------------------
# Layer selection
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("num_teacher_layers", "kwargs", "expected"),
    [
        (12, {}, [0, 2, 4, 6, 8, 10]),
        (5, {}, [0, 2, 4]),
        (1, {}, [0]),
        (5, {"num_layers": 3}, [0, 2, 4]),
        (12, {"num_layers": 12}, list(range(12))),
        (12, {"num_layers": 1}, [0]),
        (12, {"num_layers": 4}, [0, 3, 6, 9]),
        (12, {"num_layers": 5}, [0, 3, 5, 8, 10]),
        (12, {"layers": [0, 2, 4, 7, 9, 11]}, [0, 2, 4, 7, 9, 11]),
        (12, {"layers": (0, 2, 4, 7, 9, 11), "num_layers": 6}, [0, 2, 4, 7, 9, 11]),
        (12, {"layers": [11]}, [11]),
    ],
)
def test_layer_selection(num_teacher_layers, kwargs, expected):
    """A selection rule that drifts (floor instead of ceiling, a float rounding slip, `layers` ignored) silently builds
    a different student than the documented one."""
    teacher = teacher_for("bert", "Model", num_layers=num_teacher_layers)
    student = make_student(teacher, **kwargs)
    assert student.config.distillation["teacher_layers"] == expected
    assert student.config.num_hidden_layers == len(expected) == len(student.encoder.layer)
    assert_copied_from(student, teacher, expected)


def test_num_layers_rule_is_ceiling_of_even_spacing():
    """The docstring promises `ceil(i * N / k)`; an off-by-one in the integer trick would pick other layers for some
    (N, k) pairs that the hand-picked cases above miss."""
    for n in range(1, 25):
        for k in range(1, n + 1):
            expected = [math.ceil(Fraction(i * n, k)) for i in range(k)]
            assert student_module._select_layers(n, None, k) == expected, (n, k)
        assert student_module._select_layers(n, None, None) == list(range(0, n, 2))


# ---------------------------------------------------------------------------------------------------------------------
# What is kept from the teacher
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", MLM_ARCHS)
def test_teacher_is_unchanged(model_type):
    """Building a student in place (deleting layers from the teacher, or editing its config) would corrupt the teacher
    that the same run then distils from."""
    teacher = teacher_for(model_type, "ForMaskedLM")
    teacher.train()
    tensors, config = snapshot(teacher)
    make_student(teacher, num_layers=3)
    after_tensors, after_config = snapshot(teacher)
    assert after_config == config
    assert tensors.keys() == after_tensors.keys()
    assert all(torch.equal(tensors[k], after_tensors[k]) for k in tensors)
    assert teacher.training and teacher.config.num_hidden_layers == 4


@pytest.mark.parametrize("model_type", MLM_ARCHS)
def test_tied_weights_stay_tied(model_type):
    """After `load_state_dict(assign=True)` the decoder gets its own copy of the word embeddings; an untied student
    trains two matrices that the teacher (and the reloaded checkpoint) treat as one."""
    student = make_student(teacher_for(model_type, "ForMaskedLM"))
    assert student.get_output_embeddings().weight is student.get_input_embeddings().weight


@pytest.mark.parametrize("model_type", MLM_ARCHS)
def test_untied_teacher_gives_untied_student(model_type):
    """Tying from the config alone would overwrite an untied teacher's decoder with its word embeddings."""
    teacher = teacher_for(model_type, "ForMaskedLM", tie_word_embeddings=False)
    assert teacher.get_output_embeddings().weight is not teacher.get_input_embeddings().weight
    student = make_student(teacher)
    assert student.get_output_embeddings().weight is not student.get_input_embeddings().weight
    assert torch.equal(student.get_output_embeddings().weight, teacher.get_output_embeddings().weight)


def test_teacher_untied_despite_its_config_stays_untied():
    """`from_pretrained` leaves a decoder untied when the checkpoint holds different values although the config says
    tie; the student must follow the teacher's actual parameters, not re-tie and lose the decoder."""
    teacher = teacher_for("bert", "ForMaskedLM")
    decoder = teacher.get_output_embeddings()
    decoder.weight = nn.Parameter(decoder.weight.detach() + 1.0)
    student = make_student(teacher)
    assert student.get_output_embeddings().weight is not student.get_input_embeddings().weight
    assert torch.equal(student.get_output_embeddings().weight, decoder.weight)


@pytest.mark.parametrize("training", [True, False])
def test_student_follows_teacher_mode(training):
    """A student left in eval mode trains without dropout; one left in train mode evaluates with it."""
    teacher = teacher_for("bert").train(training)
    student = make_student(teacher)
    assert all(module.training is training for module in student.modules())


def test_student_keeps_teacher_dtype():
    """A float32 student from a bfloat16 teacher doubles the memory and no longer matches the teacher's numerics."""
    teacher = teacher_for("bert").to(torch.bfloat16)
    student = make_student(teacher)
    assert_copied_from(student, teacher, [0, 2])  # compares dtypes tensor by tensor (position ids stay int64)
    assert torch.isfinite(outputs(student).float()).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_student_keeps_teacher_device():
    """A student built on the CPU from a GPU teacher would fail on its first batch with a device mismatch."""
    teacher = teacher_for("modernbert", "ForMaskedLM").cuda()
    student = make_student(teacher)
    assert_copied_from(student, teacher, [0, 2])
    inputs = {k: v.cuda() for k, v in inputs_for(student).items()}
    with torch.no_grad():
        assert torch.isfinite(student(**inputs).logits).all()


def test_frozen_teacher_gives_trainable_student():
    """Copying `requires_grad=False` from a frozen teacher would make a student that never learns."""
    teacher = teacher_for("bert").requires_grad_(False)
    assert all(p.requires_grad for p in make_student(teacher).parameters())


def test_distilbert_config_maps_layer_count():
    """DistilBERT stores the layer count as `n_layers`; setting an unmapped attribute would leave the saved config
    saying 4 layers for a 2-layer model."""
    student = make_student(teacher_for("distilbert"))
    assert student.config.n_layers == 2
    assert student.config.to_dict()["n_layers"] == 2
    assert len(student.distilbert.transformer.layer) == 2


def test_modernbert_layer_types_follow_kept_layers(tmp_path):
    """ModernBERT alternates global and sliding-window layers; regenerating `layer_types` from the default pattern
    for the student's depth would give copied layers the wrong attention type."""
    teacher = teacher_for("modernbert", "ForMaskedLM")
    assert teacher.config.layer_types == ["full_attention", "sliding_attention", "sliding_attention", "full_attention"]
    student = make_student(teacher, layers=[0, 3])
    assert student.config.layer_types == ["full_attention", "full_attention"]
    for layer, source in zip(student.model.layers, [teacher.model.layers[0], teacher.model.layers[3]]):
        assert layer.attention_type == source.attention_type
        assert layer.attn.sliding_window == source.attn.sliding_window
    student.save_pretrained(tmp_path)
    assert type(student).from_pretrained(tmp_path).config.layer_types == ["full_attention", "full_attention"]


def test_teacher_given_as_local_path(tmp_path):
    """Loading a path with `AutoModel` would drop the classification head; the student must have the teacher's class
    and record where the teacher came from."""
    teacher = teacher_for("bert", "ForSequenceClassification")
    teacher.save_pretrained(tmp_path)
    for name_or_path in (str(tmp_path), tmp_path):
        student = make_student(name_or_path, num_layers=1)
        assert type(student) is BertForSequenceClassification
        assert student.config.distillation == {
            "teacher": str(tmp_path),
            "teacher_layers": [0],
            "teacher_num_layers": 4,
        }
        assert_copied_from(student, teacher, [0])


def test_teacher_name_is_recorded():
    """Recording an empty string instead of the teacher's name (or of None) would make saved students untraceable."""
    teacher = teacher_for("bert")
    teacher.config._name_or_path = "org/tiny-teacher"
    assert make_student(teacher).config.distillation["teacher"] == "org/tiny-teacher"


# ---------------------------------------------------------------------------------------------------------------------
# ALBERT
# ---------------------------------------------------------------------------------------------------------------------


def test_albert_student_reuses_shared_layer():
    """ALBERT has one shared layer, so a student that remapped layer indices would drop it; the student must copy
    every weight and apply it fewer times."""
    teacher = teacher_for("albert", "Model")
    student = make_student(teacher, num_layers=3)
    assert student.config.num_hidden_layers == 3
    assert student.config.distillation["teacher_layers"] == [0, 1, 2]
    assert_copied_from(student, teacher, [0, 1, 2])
    assert make_student(teacher, layers=[0, 1]).config.distillation["teacher_layers"] == [0, 1]


def test_albert_rejects_picked_layers(no_build):
    """Accepting `layers=[0, 2]` for ALBERT would pretend to pick layers that do not exist as separate weights."""
    with pytest.raises(ValueError, match="shares.*" + re.escape("layers=[0, 2]") + ".*num_layers=2"):
        make_student(teacher_for("albert", "Model"), layers=[0, 2])


def test_albert_rejects_several_hidden_groups(no_build):
    """With several hidden groups a depth change reassigns layers to groups, which the shared-weights rule does not
    describe; it must fail loudly rather than build something unexpected."""
    teacher = AlbertModel(AlbertConfig(**TINY, num_hidden_layers=4, num_hidden_groups=2, embedding_size=16))
    with pytest.raises(ValueError, match="num_hidden_groups=2"):
        make_student(teacher)


# ---------------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"layers": []}, "layers is empty"),
        ({"layers": [0, 1.5]}, r"got 1\.5"),
        ({"layers": [0, True]}, "got True"),
        ({"layers": ["0", "2"]}, "got '0'"),
        ({"layers": 3}, "int 3.*num_layers=3"),
        ({"layers": [0, 4]}, r"entry 4 is out of range.*4 layers.*0\.\.3"),
        ({"layers": [-1, 2]}, r"entry -1 is out of range.*0\.\.3"),
        ({"layers": [2, 0]}, re.escape("strictly increasing") + ".*" + re.escape("[2, 0]; did you mean [0, 2]")),
        ({"layers": [0, 0, 2]}, re.escape("strictly increasing") + ".*" + re.escape("did you mean [0, 2]")),
        ({"num_layers": 0}, "positive int.*got 0"),
        ({"num_layers": 2.0}, "positive int.*got 2.0"),
        ({"num_layers": 5}, "num_layers=5 would make a student with more layers than its teacher"),
        ({"layers": [0, 1], "num_layers": 3}, "2 entries but num_layers=3"),
    ],
)
def test_invalid_selection_raises(kwargs, match, no_build):
    """An unchecked selection would either crash deep inside `load_state_dict` with an unhelpful message or, worse,
    build a student from the wrong layers (negative indices, duplicates)."""
    with pytest.raises(ValueError, match=match):
        make_student(teacher_for("bert"), **kwargs)


def test_invalid_teacher_type_raises(no_build):
    """A teacher of the wrong type (a dict, a PEFT wrapper) must fail with its type named, not deep inside."""
    with pytest.raises(TypeError, match="got dict"):
        make_student({"model": "bert"})


@pytest.mark.parametrize(
    "teacher",
    [
        pytest.param(lambda: GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=99)), id="gpt2"),
        pytest.param(
            lambda: T5EncoderModel(T5Config(d_model=32, d_kv=16, d_ff=37, num_layers=2, num_heads=2, vocab_size=99)),
            id="t5",
        ),
    ],
)
def test_unsupported_architecture_raises(teacher, no_build):
    """An unknown architecture must be refused by name with the supported list, not half-copied."""
    model = teacher()
    with pytest.raises(ValueError, match=f"{type(model).__name__}.*{model.config.model_type!r}.*bert, camembert"):
        make_student(model)


def test_modernbert_first_layer_must_be_teacher_layer_zero(no_build):
    """ModernBERT's layer 0 has no attention LayerNorm; copying layer 1 there would fail in `load_state_dict` with a
    key list instead of saying what to change."""
    with pytest.raises(ValueError, match="Teacher layer 1 cannot become student layer 0.*attn_norm.*layer 0"):
        make_student(teacher_for("modernbert", "Model"), layers=[1, 3])


def test_bert_teacher_with_masked_lm_head_keeps_head():
    """A student of another class (e.g. `BertModel`) would lose the teacher's MLM head and its bias."""
    teacher = teacher_for("bert", "ForMaskedLM")
    student = make_student(teacher)
    assert isinstance(student, BertForMaskedLM)
    assert torch.equal(student.cls.predictions.bias, teacher.cls.predictions.bias)


def test_a_head_pruned_teacher_is_refused_with_the_fix(tiny_classifier):
    """Copying layers of a head-pruned teacher into a student of the config's shape fails deep in load_state_dict or
    with a message about layers "built differently"; the user must be told to prune the student instead."""
    from hf_distill import prune_heads

    prune_heads(tiny_classifier, {0: [0]})
    with pytest.raises(ValueError, match="prune the student"):
        make_student(tiny_classifier, layers=[0, 2])
