"""Loading models by name or path with the Auto class that matches an architecture.

A teacher given as a string to `make_student` or `DistillationTrainer` must come back with the right head: a
`BertForSequenceClassification` student needs a teacher loaded through `AutoModelForSequenceClassification`, not
`AutoModel`. This module maps a class name such as `"BertForMaskedLM"` to its Auto class.
"""

from __future__ import annotations

import os

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForMultipleChoice,
    AutoModelForNextSentencePrediction,
    AutoModelForPreTraining,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    PreTrainedModel,
)
from transformers.models.auto import modeling_auto
from transformers.utils import logging

logger = logging.get_logger(__name__)

# Order matters: a class name can sit in several tables (e.g. `BertForMaskedLM` is also a pre-training class for some
# model types), and the first table that holds it wins.
_AUTO_CLASSES: tuple[tuple[str, type], ...] = (
    ("MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES", AutoModelForSequenceClassification),
    ("MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES", AutoModelForTokenClassification),
    ("MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES", AutoModelForQuestionAnswering),
    ("MODEL_FOR_MULTIPLE_CHOICE_MAPPING_NAMES", AutoModelForMultipleChoice),
    ("MODEL_FOR_MASKED_LM_MAPPING_NAMES", AutoModelForMaskedLM),
    ("MODEL_FOR_NEXT_SENTENCE_PREDICTION_MAPPING_NAMES", AutoModelForNextSentencePrediction),
    ("MODEL_FOR_PRETRAINING_MAPPING_NAMES", AutoModelForPreTraining),
    ("MODEL_MAPPING_NAMES", AutoModel),
)


def auto_class_for(class_name: str) -> type:
    """Return the Auto class whose mapping contains `class_name`.

    Args:
        class_name (`str`): A model class name, e.g. `"RobertaForSequenceClassification"`.

    Returns:
        `type`: The matching Auto class, e.g. `AutoModelForSequenceClassification`.

    Raises:
        ValueError: If no Auto class knows the name.
    """
    for table_name, auto_class in _AUTO_CLASSES:
        table = getattr(modeling_auto, table_name, {})
        for value in table.values():
            names = value if isinstance(value, (list, tuple)) else (value,)
            if class_name in names:
                return auto_class
    raise ValueError(
        f"No Auto class loads the architecture {class_name!r}. Load the model yourself and pass the "
        "`PreTrainedModel` instance instead of its name."
    )


def load_model(name_or_path: str | os.PathLike, *, like: str | None = None, **kwargs) -> PreTrainedModel:
    """Load a model from the Hub or a local path with the Auto class of an architecture.

    Args:
        name_or_path (`str` or `os.PathLike`): A Hub model id or a local directory.
        like (`str`, *optional*):
            A class name whose head the loaded model must have (the student's class when loading a teacher). By default
            the first entry of the checkpoint's `config.architectures` decides, and `AutoModel` is used when it is
            missing.
        **kwargs: Passed on to `from_pretrained` (e.g. `revision`, `dtype`).

    Returns:
        `PreTrainedModel`: The loaded model.
    """
    if like is None:
        config = AutoConfig.from_pretrained(name_or_path, **{k: v for k, v in kwargs.items() if k == "revision"})
        architectures = getattr(config, "architectures", None) or []
        like = architectures[0] if architectures else None
    auto_class = auto_class_for(like) if like is not None else AutoModel
    logger.info("Loading %s with %s", name_or_path, auto_class.__name__)
    return auto_class.from_pretrained(name_or_path, **kwargs)


def head_suffix(model: PreTrainedModel) -> str:
    """The head part of a model's class name: `"ForSequenceClassification"` for `BertForSequenceClassification`.

    A base model without a head (e.g. `BertModel`) gives `"Model"`.
    """
    name = type(model).__name__
    index = name.find("For")
    return name[index:] if index >= 0 else "Model"
