"""SageMaker endpoint handler for the Hugging Face inference toolkit.

Deployed as `code/inference.py` inside model.tar.gz, next to a copy of the `multilabel`
package; training puts both there. Everything the endpoint needs (labels, thresholds,
text columns, max length) is read from the model directory.

    POST /invocations  Content-Type: application/json
    {"inputs": {"casePart1": "...", "casePart2": "..."}, "parameters": {"top_k": 3}}
    -> {"labels": ["label3"], "scores": {"label1": 0.02, ...}}
"""

from __future__ import annotations

from multilabel.serving import Classifier, Request, Response, encode_response, parse_request


def model_fn(model_dir: str) -> Classifier:
    return Classifier.load(model_dir)


def input_fn(input_data: str | bytes, content_type: str) -> Request:
    return parse_request(input_data, content_type)


def predict_fn(data: Request, model: Classifier) -> Response:
    return model.handle(data)


def output_fn(prediction: Response, accept: str) -> str:
    return encode_response(prediction, accept)
