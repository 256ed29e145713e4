"""SageMaker Batch Transform between S3 and the container, emulated on 127.0.0.1.

No part of the Batch Transform service runs outside AWS, so its data handling is written
here from its documentation (CreateTransformJob, "Associate prediction results with input
records"): with `SplitType=Line` and `BatchStrategy=MultiRecord` it packs as many whole
lines as fit in `MaxPayloadInMB` into one request; `InputFilter` selects what the container
sees; with `JoinSource=Input` each output line is added to its input object under
`SageMakerOutput`; `OutputFilter` selects what is kept; `AssembleWith=Line` writes one
line per record. The container side is real: the requests go to the real model server.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

MB = 1024 * 1024
_NAMES = re.compile(r"^\$\[\s*'[^']*'(\s*,\s*'[^']*')*\s*\]$")


class TransformError(RuntimeError):
    """What the service reports as a failed transform job."""


def mini_batches(lines: Sequence[bytes], max_payload_mb: int) -> Iterator[list[bytes]]:
    """MultiRecord: consecutive whole lines, as many as fit in `max_payload_mb` (0: no limit)."""
    limit = max_payload_mb * MB if max_payload_mb else None
    batch: list[bytes] = []
    size = 0
    for number, line in enumerate(lines, start=1):
        if limit is not None and len(line) > limit:
            raise TransformError(f"line {number} ({len(line)} bytes) exceeds MaxPayloadInMB={max_payload_mb}")
        if batch and limit is not None and size + len(line) > limit:
            yield batch
            batch, size = [], 0
        batch.append(line)
        size += len(line)
    if batch:
        yield batch


def select(document: dict[str, Any], path: str) -> dict[str, Any]:
    """The JSONPath subset the filters take for JSON objects: `$`, `$.name`, `$['a','b']`."""
    if path == "$":
        return document
    if _NAMES.match(path):
        names = re.findall(r"'([^']*)'", path)
        return {name: document[name] for name in names if name in document}
    if path.startswith("$.") and path[2:].isidentifier():
        return document[path[2:]]
    raise TransformError(f"JSONPath {path!r} is outside what this emulation supports")


def transform(
    lines: Sequence[bytes],
    invoke: Callable[[bytes], tuple[int, bytes]],
    max_payload_mb: int,
    input_filter: str = "$",
    join_source: str = "None",
    output_filter: str = "$",
) -> list[str]:
    """Run the lines through `invoke(body) -> (status, body)`; the assembled output lines."""
    output: list[str] = []
    for batch in mini_batches(lines, max_payload_mb):
        inputs = [json.loads(line) for line in batch]
        body = b"".join(json.dumps(select(record, input_filter)).encode() + b"\n" for record in inputs)
        status, answer = invoke(body)
        if status != 200:
            raise TransformError(f"a mini-batch of {len(batch)} records got HTTP {status}: {answer[:300]!r}")
        results = [json.loads(line) for line in answer.decode().splitlines() if line.strip()]
        if len(results) != len(batch):
            raise TransformError(f"{len(batch)} records in, {len(results)} results out")
        for record, result in zip(inputs, results, strict=True):
            joined = {**record, "SageMakerOutput": result} if join_source == "Input" else result
            output.append(json.dumps(select(joined, output_filter)))
    return output
