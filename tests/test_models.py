"""The tiny students (hf_distill.models): real HF models, padding-invariant, HF head conventions, built from a
teacher."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, BertForSequenceClassification, pipeline

from hf_distill import (
    BiLSTMConfig,
    BiLSTMForSequenceClassification,
    TextCNNConfig,
    TextCNNForSequenceClassification,
    make_tiny_student,
)
from hf_distill.models.tiny_student import project_embeddings

from .conftest import VOCAB_SIZE, tiny_bert_config

TYPES = ["bilstm", "textcnn"]
CLASSES = {"bilstm": BiLSTMForSequenceClassification, "textcnn": TextCNNForSequenceClassification}


def tiny(student_type: str, seed: int = 0, **config) -> torch.nn.Module:
    torch.manual_seed(seed)
    config_class = BiLSTMConfig if student_type == "bilstm" else TextCNNConfig
    values = dict(vocab_size=VOCAB_SIZE, embedding_dim=16, dropout=0.0, num_labels=3)
    if student_type == "bilstm":
        values.update(hidden_size=8, mlp_hidden_size=12)
    else:
        values.update(num_filters=6)
    values.update(config)
    return CLASSES[student_type](config_class(**values)).eval()


def batch(lengths: list[int], seq_len: int, *, left: bool = False, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.zeros(len(lengths), seq_len, dtype=torch.long)
    mask = torch.zeros(len(lengths), seq_len, dtype=torch.long)
    for row, length in enumerate(lengths):
        tokens = torch.randint(1, VOCAB_SIZE, (length,), generator=generator)
        span = slice(seq_len - length, seq_len) if left else slice(0, length)
        ids[row, span], mask[row, span] = tokens, 1
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("student_type, pooling", [("bilstm", "max"), ("bilstm", "last"), ("textcnn", "max")])
def test_padding_never_changes_the_logits(student_type, pooling):
    """An encoder that reads padding (an LSTM run over pad tokens, a max over padded windows) gives a sentence other
    logits in every batch: evaluation then depends on batch composition, and cached teacher targets stop matching."""
    model = tiny(student_type, **({"pooling": pooling} if student_type == "bilstm" else {}))
    lengths = [5, 1, 9, 2]  # 1 and 2 tokens: shorter than TextCNN's widest kernel
    with torch.no_grad():
        reference = model(**batch(lengths, 9)).logits
        for seq_len in (12, 30):
            assert torch.allclose(model(**batch(lengths, seq_len)).logits, reference, atol=1e-5)
            assert torch.allclose(model(**batch(lengths, seq_len, left=True)).logits, reference, atol=1e-5)
        # Padding ids other than 0 change nothing either: only the mask says what is padding.
        padded = batch(lengths, 12)
        padded["input_ids"] = padded["input_ids"].masked_fill(padded["attention_mask"] == 0, 7)
        assert torch.allclose(model(**padded).logits, reference, atol=1e-5)
        single = model(**{k: v[2:3, :9] for k, v in batch(lengths, 9).items()}).logits
        assert torch.allclose(single, reference[2:3], atol=1e-5)


@pytest.mark.parametrize("student_type", TYPES)
def test_save_and_load_through_the_auto_classes(student_type, tmp_path):
    """A model that only loads with its own class (or loses its config fields on save) cannot go through the Hub:
    `AutoModelForSequenceClassification.from_pretrained` must rebuild it exactly after `import hf_distill`."""
    overrides = {"pooling": "last"} if student_type == "bilstm" else {"kernel_sizes": [2, 3]}
    model = tiny(student_type, **overrides)
    model.config.id2label, model.config.label2id = {0: "a", 1: "b", 2: "c"}, {"a": 0, "b": 1, "c": 2}
    model.save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path)
    assert type(config) is type(model.config) and config.model_type == f"hf_distill_{student_type}"
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is CLASSES[student_type]
    for key, value in overrides.items():
        assert getattr(loaded.config, key) == value
    assert loaded.config.id2label == {0: "a", 1: "b", 2: "c"}
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    inputs = batch([4, 7], 7)
    with torch.no_grad():
        # The LSTM's weights are re-flattened on load, which can change the last bit of a sum.
        torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("student_type", TYPES)
def test_heads_follow_transformers_conventions(student_type):
    """A head that computes its own loss differently from transformers' (no -100 skip, no regression or multi-label
    branch) trains the wrong objective through Trainer without any error."""
    inputs = batch([3, 5, 4], 5)
    model = tiny(student_type)
    labels = torch.tensor([0, -100, 2])
    output = model(**inputs, labels=labels)
    expected = torch.nn.functional.cross_entropy(output.logits[[0, 2]], labels[[0, 2]])
    assert torch.allclose(output.loss, expected) and model.config.problem_type == "single_label_classification"

    regressor = tiny(student_type, num_labels=1)
    scores = torch.tensor([0.5, 2.0, 4.5])
    output = regressor(**inputs, labels=scores)
    assert output.logits.shape == (3, 1)
    assert torch.allclose(output.loss, torch.nn.functional.mse_loss(output.logits.squeeze(-1), scores))

    tagger = tiny(student_type, num_labels=4, problem_type="multi_label_classification")
    targets = torch.tensor([[1.0, 0, 1, 0], [0, 0, 0, 1], [1, 1, 0, 0]])
    output = tagger(**inputs, labels=targets)
    assert torch.allclose(output.loss, torch.nn.functional.binary_cross_entropy_with_logits(output.logits, targets))

    as_tuple = model(**inputs, labels=labels, return_dict=False)
    assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[1], model(**inputs).logits)


def test_invalid_configs_are_refused():
    """A zero-width layer or an unknown pooling builds a model that fails deep in forward, or silently ignores the
    setting; the config must refuse it with the field's name."""
    with pytest.raises(ValueError, match="hidden_size"):
        BiLSTMConfig(hidden_size=0)
    with pytest.raises(ValueError, match="pooling"):
        BiLSTMConfig(pooling="mean")
    with pytest.raises(ValueError, match="dropout"):
        BiLSTMConfig(dropout=1.0)
    with pytest.raises(ValueError, match="kernel_sizes"):
        TextCNNConfig(kernel_sizes=[])
    with pytest.raises(ValueError, match="kernel_sizes"):
        TextCNNConfig(kernel_sizes=[3, 0])


@pytest.mark.parametrize("student_type", TYPES)
def test_make_tiny_student_takes_vocabulary_labels_and_embeddings_from_the_teacher(student_type, tiny_classifier):
    """A student with its own vocabulary or label order reads the teacher's ids as other tokens and learns class i
    as class j; its embeddings, when asked to start from the teacher's, must be the teacher's."""
    tiny_classifier.config.id2label = {0: "neg", 1: "neu", 2: "pos"}
    tiny_classifier.config.label2id = {"neg": 0, "neu": 1, "pos": 2}
    student = make_tiny_student(tiny_classifier, student_type)
    teacher_table = tiny_classifier.get_input_embeddings().weight
    assert student.config.vocab_size == VOCAB_SIZE and student.config.num_labels == 3
    assert student.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    assert student.config.pad_token_id == tiny_classifier.config.pad_token_id
    pad = tiny_classifier.config.pad_token_id
    copied = student.get_input_embeddings().weight
    assert torch.equal(copied[pad + 1 :], teacher_table[pad + 1 :]) and torch.equal(copied[:pad], teacher_table[:pad])
    assert not copied[pad].any()  # the padding row is zero, as in a fresh nn.Embedding(padding_idx=...)
    assert student.get_input_embeddings().weight.data_ptr() != teacher_table.data_ptr()
    assert student.config.distillation == {"teacher": None, "student_type": student_type, "embedding_init": "teacher"}
    assert student.training

    projected = make_tiny_student(tiny_classifier, student_type, embedding_dim=8)
    assert projected.get_input_embeddings().weight.shape == (VOCAB_SIZE, 8)
    random_start = make_tiny_student(tiny_classifier, student_type, embedding_init="random", embedding_dim=20)
    assert random_start.config.embedding_dim == 20


def test_projected_embeddings_keep_the_leading_principal_components():
    """A projection that drops the largest directions (or forgets to centre) throws away most of what the teacher's
    table says about which tokens are alike."""
    torch.manual_seed(0)
    basis = torch.linalg.qr(torch.randn(6, 6)).Q
    table = (torch.randn(200, 6) * torch.tensor([5.0, 3.0, 1.0, 0.1, 0.1, 0.1])) @ basis.T + 4.0
    projected = project_embeddings(table, 3)
    centred = table - table.mean(0)
    # Three leading directions hold almost all the variance, so the projection keeps the pairwise distances.
    assert torch.allclose(torch.cdist(projected, projected), torch.cdist(centred, centred), rtol=0.02, atol=0.3)
    assert torch.allclose(projected.mean(0), torch.zeros(3), atol=1e-4)


def test_make_tiny_student_refuses_what_cannot_work(tiny_classifier, tiny_tagger):
    """A typo in an override stored silently, an embedding wider than the teacher's copied from it, a label count
    taken from the user instead of the teacher, or a token-level teacher: each gives a student that cannot learn
    the teacher's task, found only after training."""
    with pytest.raises(ValueError, match="hiden_size"):
        make_tiny_student(tiny_classifier, "bilstm", hiden_size=8)
    with pytest.raises(ValueError, match="embedding_dim=64"):
        make_tiny_student(tiny_classifier, "textcnn", embedding_dim=64)
    with pytest.raises(ValueError, match="num_labels"):
        make_tiny_student(tiny_classifier, "bilstm", num_labels=2)
    with pytest.raises(ValueError, match="BertForTokenClassification"):
        make_tiny_student(tiny_tagger, "bilstm")
    with pytest.raises(ValueError, match="student_type"):
        make_tiny_student(tiny_classifier, "gru")
    with pytest.raises(ValueError, match="embedding_init"):
        make_tiny_student(tiny_classifier, "bilstm", embedding_init="glove")
    wide = BertForSequenceClassification(tiny_bert_config(hidden_size=128, num_attention_heads=2))
    with pytest.raises(ValueError, match="principal components"):
        make_tiny_student(wide, "textcnn", embedding_dim=100)  # more components than the 99 tokens give


def test_pipeline_runs_a_saved_student_with_the_teachers_tokenizer(minilm_path, tmp_path):
    """The students must work where users run models: `pipeline("text-classification")` passes the tokenizer's
    `token_type_ids` too, which a forward without that argument rejects."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    config = TextCNNConfig(vocab_size=tokenizer.vocab_size, embedding_dim=8, num_filters=4, num_labels=2)
    TextCNNForSequenceClassification(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    classifier = pipeline("text-classification", model=str(tmp_path))
    result = classifier(["a charming film", "dull"])
    assert len(result) == 2 and {r["label"] for r in result} <= {"LABEL_0", "LABEL_1"}


def test_bilstm_runs_under_cpu_autocast_on_equal_lengths():
    """oneDNN has no bf16 LSTM for a batch whose rows all have one length (batch size 1 included): `--bf16` on a CPU
    trained, then crashed in evaluation, in a pipeline, or in the recipe's latency measurement after training."""
    model = tiny("bilstm")
    inputs = batch([6, 6], 6)
    with torch.no_grad():
        reference = model(**inputs).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = model(**inputs).logits
            single = model(**{k: v[:1] for k, v in inputs.items()}).logits
    torch.testing.assert_close(autocast.float(), reference, atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(single.float(), reference[:1], atol=2e-2, rtol=2e-2)
