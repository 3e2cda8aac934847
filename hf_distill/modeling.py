"""Loading models by name or path with the Auto class that matches an architecture.

A teacher given as a string to `make_student` or `DistillationTrainer` must come back with the right head: a
`BertForSequenceClassification` student needs a teacher loaded through `AutoModelForSequenceClassification`, not
`AutoModel`. This module maps a class name such as `"BertForMaskedLM"` to its Auto class.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

from torch import nn
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
from transformers.trainer_utils import number_of_arguments
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


def auto_class_for(class_name: str | type) -> type:
    """Return the Auto class whose mapping contains `class_name`.

    Args:
        class_name (`str` or `type`): A model class name, e.g. `"RobertaForSequenceClassification"`, or a class,
            whose hierarchy is searched (a user's subclass of `BertForSequenceClassification` maps like its parent).

    Returns:
        `type`: The matching Auto class, e.g. `AutoModelForSequenceClassification`.

    Raises:
        ValueError: If no Auto class knows the name.
    """
    names = [cls.__name__ for cls in class_name.__mro__] if isinstance(class_name, type) else [class_name]
    for name in names:
        for table_name, auto_class in _AUTO_CLASSES:
            table = getattr(modeling_auto, table_name, {})
            for value in table.values():
                if name in (value if isinstance(value, (list, tuple)) else (value,)):
                    return auto_class
    raise ValueError(
        f"No Auto class loads the architecture {names[0]!r}. Load the model yourself and pass the "
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
    name_or_path: str | os.PathLike, *, like: str | type | None = None, require_all_weights: bool = False, **kwargs
) -> PreTrainedModel:
    """Load a model from the Hub or a local path with the Auto class of an architecture.

    Args:
        name_or_path (`str` or `os.PathLike`): A Hub model id or a local directory.
        like (`str` or `type`, *optional*):
            A class (or class name) whose head the loaded model must have (the student's class when loading a
            teacher). By default, and for a plain `nn.Module` class, the first entry of the checkpoint's
            `config.architectures` decides, and `AutoModel` is used when it is missing.
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
    if isinstance(like, type) and not issubclass(like, PreTrainedModel):
        like = None  # a plain `nn.Module` student: the checkpoint's own architecture decides
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


# Model types whose position ids start after the padding index (`create_position_ids_from_input_ids`), so that
# `max_position_embeddings` (514 for RoBERTa) holds `pad_token_id + 1` fewer usable positions.
_POSITION_OFFSET_TYPES = frozenset(
    {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "roberta-prelayernorm", "data2vec-text", "mpnet"}
)


def max_sequence_length(config: Any) -> int | None:
    """The longest input, in tokens, that a model with this config can embed; `None` when it has no fixed limit.

    Absolute position embeddings bound the length (`max_position_embeddings`, less the padding offset of RoBERTa-style
    models); DeBERTa without `position_biased_input` uses relative positions only and has no such bound.
    """
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    limit = getattr(config, "max_position_embeddings", None)
    if not isinstance(limit, int) or getattr(config, "position_biased_input", True) is False:
        return None
    if getattr(config, "model_type", None) in _POSITION_OFFSET_TYPES:
        limit -= (getattr(config, "pad_token_id", None) or 0) + 1
    return limit


def head_suffix(model: nn.Module) -> str:
    """The head part of a model's class name: `"ForSequenceClassification"` for `BertForSequenceClassification`.

    The class hierarchy is searched, so a user's subclass (`class MyClassifier(BertForSequenceClassification)`) has
    its parent's head. A base model without a head (e.g. `BertModel`) gives `"Model"`, and a plain `nn.Module`
    gives `""` (no head to compare).
    """
    for cls in type(model).__mro__:
        index = cls.__name__.find("For")
        if index > 0 and issubclass(cls, PreTrainedModel):
            return cls.__name__[index:]
    return "Model" if isinstance(model, PreTrainedModel) else ""


def forward_input_names(model: nn.Module) -> set[str] | None:
    """The named inputs of a model's `forward`, or `None` when it names none (a `forward(**batch)` takes anything).

    transformers models name every real input and take `**kwargs` only for options (`output_hidden_states`, ...), so
    the named parameters are what the model can use; an unknown column passed through `**kwargs` is silently ignored
    or, worse, forwarded to the attention implementation.
    """
    parameters = inspect.signature(model.forward).parameters.values()
    named = {
        p.name for p in parameters if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    }
    return named or None


def call_student_init(model_init: Any, trial: Any = None) -> nn.Module:
    """Call a `model_init` the way `Trainer` does (with no argument, or with the trial)."""
    if number_of_arguments(model_init) == 0:
        model = model_init()
    else:
        model = model_init(trial)
    if model is None:
        raise ValueError("model_init returned None; it must return a fresh student model")
    return model


def takes_return_dict(model: nn.Module) -> bool:
    """Whether `return_dict=True` can be passed: every `PreTrainedModel` takes it, a plain module if it names it."""
    return isinstance(model, PreTrainedModel) or "return_dict" in (forward_input_names(model) or ())
