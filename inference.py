"""SageMaker endpoint handler for the Hugging Face inference toolkit.

Deployed as `code/inference.py` inside model.tar.gz, next to the modules of the
`multilabel` package that it imports (the request codec, the classifier and theirs);
training puts both there. Everything the endpoint needs (labels, thresholds,
text columns, max length) is read from the model directory.

    POST /invocations  Content-Type: application/json
    {"inputs": {"casePart1": "...", "casePart2": "..."}, "parameters": {"top_k": 3}}
    -> {"labels": ["label3"], "scores": {"label1": 0.02, ...}}

`input_fn` and `output_fn` take the toolkit's optional trailing `context`: the toolkit
passes the one `mms.context.Context` that Multi Model Server reuses for every request,
its `request_processor` set to the current request's headers. Through it `input_fn`
checks `Accept` before any inference runs (the toolkit hands `accept` to `output_fn`
only), and sets the response's Content-Type to the type chosen (the toolkit would set
the raw `Accept` header, e.g. `application/json, text/plain`).
"""

from __future__ import annotations

from typing import Any

from multilabel.serving.classifier import Classifier
from multilabel.serving.request_codec import (
    Request,
    Response,
    encode_response,
    keep_request_content_out_of_logs,
    negotiate,
    parse_request,
)


def model_fn(model_dir: str) -> Classifier:
    """Load and check the model directory and settings; a broken deployment fails here."""
    keep_request_content_out_of_logs()
    return Classifier.load(model_dir)


def _request_headers(context: Any) -> dict[str, str]:
    """The current request's headers, lower-cased names; {} without a context."""
    try:
        headers = context.request_processor[0].get_request_properties()
    except (AttributeError, IndexError, TypeError):
        return {}
    return {str(k).lower(): v for k, v in headers.items() if isinstance(v, str)}


def _pin_content_type(context: Any, media: str) -> None:
    """Answer with `media` as Content-Type, whatever the toolkit sets after output_fn."""
    processor = context.request_processor[0]
    processor.add_response_property("content-type", media)
    add = processor.add_response_property
    # The toolkit calls context.set_response_content_type(0, <raw Accept>) once the hooks
    # return; this request's processor (a new one per request) keeps our choice instead.
    processor.add_response_property = lambda key, value: (
        None if key.lower() == "content-type" else add(key, value)
    )


def input_fn(input_data: str | bytes, content_type: str, context: Any = None) -> Request:
    """Check Accept, then decode the body into records."""
    headers = _request_headers(context)
    if headers:
        media = negotiate(headers.get("accept"))
        _pin_content_type(context, media)
    return parse_request(input_data, content_type)


def predict_fn(data: Request, model: Classifier) -> Response:
    """Check the records and parameters, and predict."""
    return model.handle(data)


def output_fn(prediction: Response, accept: str) -> str:
    """Encode the results as the Accept header asks (JSON or JSON Lines)."""
    return encode_response(prediction, accept)
