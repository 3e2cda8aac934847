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


def looks_like_local_path(name_or_path: str | os.PathLike) -> bool:
    """Whether a model reference can only mean a local path: absolute, relative (`./`, `../`, `~`), or with more
    than one `/` (a Hub id is `name` or `owner/name`)."""
    text = os.fspath(name_or_path)
    return (
        os.path.isabs(text) or text.startswith((".", "~")) or text.count("/") > 1 or (os.sep != "/" and os.sep in text)
    )


def check_model_reference(name_or_path: str | os.PathLike, *, what: str = "model") -> None:
    """Raise `ValueError` for a local path that does not exist or is not a model directory, before any download.

    A Hub id (`owner/name`) that is not a local directory is left to `from_pretrained`.
    """
    text = os.fspath(name_or_path)
    if os.path.isfile(text):
        raise ValueError(
            f"the {what} {text!r} is a file; pass the directory that holds config.json and the weights "
            "(what save_pretrained wrote)"
        )
    if os.path.isdir(text):
        if not os.path.isfile(os.path.join(text, "config.json")):
            raise ValueError(
                f"the {what} directory {text!r} has no config.json, so it is not a saved model; pass the directory "
                "that save_pretrained wrote"
            )
        return
    if looks_like_local_path(text):
        raise ValueError(
            f"the {what} path {text!r} does not exist (resolved to {os.path.abspath(os.path.expanduser(text))!r}); "
            "check the path, or pass a Hub id such as 'owner/name'"
        )


def load_model(
    name_or_path: str | os.PathLike, *, like: str | None = None, require_all_weights: bool = False, **kwargs
) -> PreTrainedModel:
    """Load a model from the Hub or a local path with the Auto class of an architecture.

    Args:
        name_or_path (`str` or `os.PathLike`): A Hub model id or a local directory.
        like (`str`, *optional*):
            A class name whose head the loaded model must have (the student's class when loading a teacher). By default
            the first entry of the checkpoint's `config.architectures` decides, and `AutoModel` is used when it is
            missing.
        require_all_weights (`bool`, *optional*, defaults to `False`):
            Refuse a checkpoint that lacks some of the model's weights. A teacher must: a head that
            `from_pretrained` initialises at random (a base `BertModel` loaded as a classifier) gives random soft
            targets, and the only sign would be transformers' load report.
        **kwargs: Passed on to `from_pretrained` (e.g. `revision`, `dtype`).

    Returns:
        `PreTrainedModel`: The loaded model.

    Raises:
        ValueError: For a local path that does not exist, a reference that neither a directory nor the Hub resolves,
            or (with `require_all_weights`) missing weights, which it names.
    """
    check_model_reference(name_or_path)
    try:
        if like is None:
            config = AutoConfig.from_pretrained(name_or_path, **{k: v for k, v in kwargs.items() if k == "revision"})
            architectures = getattr(config, "architectures", None) or []
            like = architectures[0] if architectures else None
        auto_class = auto_class_for(like) if like is not None else AutoModel
        logger.info("Loading %s with %s", name_or_path, auto_class.__name__)
        model, info = auto_class.from_pretrained(name_or_path, output_loading_info=True, **kwargs)
    except OSError as error:
        raise ValueError(
            f"cannot load {os.fspath(name_or_path)!r}: it is not a local directory, and the Hub gave no model of that "
            f"id (or is unreachable: {error}). Pass an existing local directory or a Hub id such as 'owner/name'"
        ) from error
    missing = sorted(info.get("missing_keys") or [])
    if require_all_weights and missing:
        raise ValueError(
            f"{os.fspath(name_or_path)!r} has no weights for {missing[:6]}{' ...' if len(missing) > 6 else ''} "
            f"({len(missing)} missing), so loading it as a {type(model).__name__} initialises them at random: a "
            "teacher with a random head gives random soft targets. Pass a teacher fine-tuned on this task (with "
            "this head), or fine-tune it first (the GLUE recipe: --teacher_finetune_epochs 3)"
        )
    return model


def head_suffix(model: PreTrainedModel) -> str:
    """The head part of a model's class name: `"ForSequenceClassification"` for `BertForSequenceClassification`.

    A base model without a head (e.g. `BertModel`) gives `"Model"`.
    """
    name = type(model).__name__
    index = name.find("For")
    return name[index:] if index >= 0 else "Model"
