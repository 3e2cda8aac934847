"""Students that are not transformers: BiLSTM and TextCNN sequence classifiers, as real HF models.

Importing `hf_distill` registers them with the Auto classes, so that `AutoConfig` and
`AutoModelForSequenceClassification.from_pretrained(<dir or Hub id>)` load them like any transformers model.
"""

from transformers import AutoConfig, AutoModelForSequenceClassification

from .bilstm import BiLSTMConfig, BiLSTMForSequenceClassification
from .textcnn import TextCNNConfig, TextCNNForSequenceClassification
from .tiny_student import TINY_STUDENTS, make_tiny_student

for _config_class, _model_class in TINY_STUDENTS.values():
    AutoConfig.register(_config_class.model_type, _config_class, exist_ok=True)
    AutoModelForSequenceClassification.register(_config_class, _model_class, exist_ok=True)

__all__ = [
    "TINY_STUDENTS",
    "BiLSTMConfig",
    "BiLSTMForSequenceClassification",
    "TextCNNConfig",
    "TextCNNForSequenceClassification",
    "make_tiny_student",
]
