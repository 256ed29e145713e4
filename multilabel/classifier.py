"""The Python API, at its public path: `from multilabel.classifier import Classifier`.

The code lives in `multilabel/serving/classifier.py`.
"""

from multilabel.serving.classifier import Classifier
from multilabel.serving.options import Options
from multilabel.serving.request_codec import RequestError

__all__ = ["Classifier", "Options", "RequestError"]
