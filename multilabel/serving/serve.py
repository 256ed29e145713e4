"""Serve a model directory on this machine, answering as the SageMaker endpoint does.

    python -m multilabel.serve outputs/model --port 8080
    curl -s localhost:8080/invocations -H 'Content-Type: application/json' \
        -d '{"inputs": {"casePart1": "a C library", "casePart2": "for parsing text"}}'

By default it runs the real Multi Model Server with the Hugging Face inference toolkit,
exactly as the inference container starts them (the toolkit's `serving.main()`), over
MODEL_DIR with its `code/inference.py`: the same hooks, error bodies and content
negotiation as the endpoint. That needs Java 17 and the toolkit packages of
requirements-dev.txt. `--lite` needs neither: a standard-library HTTP server that loads
MODEL_DIR/code/inference.py and calls its four hooks in this process, one request at a
time; its 4xx bodies have the toolkit's shape, `{"code": 400, "type": "BadRequest",
"message": ...}`. Both answer `GET /ping` and `POST /invocations`; stop them with Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

from multilabel.core.artifact import read_model_dir

logger = logging.getLogger(__name__)

HANDLER = "code/inference.py"

# The toolkit's own entry point, with its fixed config-file path (/etc/sagemaker-mms.properties
# in the container) redirected to a file of ours; argv[1] names it. The toolkit then looks
# for "the" model server among every process on the machine, waits on it and forwards
# SIGTERM to it: right in a container, which runs one, but with two servers on one machine
# (two `multilabel.serve`, or parallel tests) stopping one would kill the other. So it is
# pointed at its own server, the one started with this config file (`-f argv[1]`).
LAUNCHER = """
import sys
import psutil
import sagemaker_inference.model_server as model_server
import sagemaker_huggingface_inference_toolkit.mms_model_server as hf_model_server
model_server.MMS_CONFIG_FILE = hf_model_server.MMS_CONFIG_FILE = sys.argv[1]

def own_server():
    for process in psutil.process_iter():
        try:
            command = process.cmdline()
            if process.status() != psutil.STATUS_ZOMBIE and model_server.MMS_NAMESPACE in command:
                if sys.argv[1] in command:
                    return process
        except psutil.Error:
            continue
    raise Exception("mms model server was unsuccessfully started")

model_server._retrieve_mms_server_process = own_server
from sagemaker_huggingface_inference_toolkit import serving
serving.main()
"""


class ServeError(RuntimeError):
    """A model directory or setting that cannot be served; the message says why."""


def check_model_dir(model_dir: Path) -> None:
    """A folder written by train.py (`read_model_dir`), with the endpoint code the server runs."""
    problems = read_model_dir(model_dir)[2]
    if not (model_dir / HANDLER).is_file():
        problems.append(f"no {HANDLER}: train.py writes it into every model directory")
    if problems:
        raise ServeError(
            f"{model_dir}: not a model directory to serve ({'; '.join(problems)}); pass the --model_dir "
            "that train.py wrote"
        )


def server_environment(
    base_dir: Path, port: int, management_port: int, tmp_dir: Path, env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The variables the inference container sets, for a server on 127.0.0.1:`port` whose
    /opt/ml is `base_dir` (its model at `base_dir`/model). One worker: a local machine."""
    return {
        **os.environ,
        **(env or {}),
        "SAGEMAKER_BASE_DIR": str(base_dir),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "MMS_INFERENCE_ADDRESS": f"http://127.0.0.1:{port}",
        "MMS_MANAGEMENT_ADDRESS": f"http://127.0.0.1:{management_port}",
        "SAGEMAKER_MODEL_SERVER_WORKERS": os.environ.get("SAGEMAKER_MODEL_SERVER_WORKERS", "1"),
        "TMPDIR": str(tmp_dir),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "HF_HUB_OFFLINE": "1",
    }


def start_model_server(
    base_dir: Path, workdir: Path, port: int, management_port: int, log: Any = None
) -> subprocess.Popen:
    """Start Multi Model Server over `base_dir`/model, in its own process group."""
    missing = [
        m for m in ("sagemaker_huggingface_inference_toolkit", "mms") if not importlib.util.find_spec(m)
    ]
    if missing:
        raise ServeError(
            f"the inference toolkit is not installed ({', '.join(missing)}): pip install -r "
            "requirements-dev.txt, or serve with --lite"
        )
    if shutil.which("java") is None:
        raise ServeError(
            "Multi Model Server needs Java 17 (`java` is not on PATH); install it, or serve with --lite"
        )
    tmp_dir = workdir / "tmp"
    tmp_dir.mkdir(exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(workdir / "mms.properties")],
        cwd=workdir,
        env=server_environment(base_dir, port, management_port, tmp_dir),
        stdout=log,
        stderr=subprocess.STDOUT if log is not None else None,
        start_new_session=True,
    )


def serve_with_model_server(model_dir: Path, port: int, management_port: int) -> int:
    """Run the real server over `model_dir` (linked, not copied) until Ctrl-C."""
    with tempfile.TemporaryDirectory(prefix="multilabel-serve-") as scratch:
        workdir = Path(scratch)
        (workdir / "opt-ml").mkdir()
        (workdir / "opt-ml" / "model").symlink_to(model_dir.resolve(), target_is_directory=True)
        process = start_model_server(workdir / "opt-ml", workdir, port, management_port)
        logger.info("Multi Model Server serving %s on http://127.0.0.1:%d (Ctrl-C stops it)", model_dir, port)
        try:
            return process.wait()
        except KeyboardInterrupt:
            return 0
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)


def load_hooks(model_dir: Path) -> ModuleType:
    """MODEL_DIR/code/inference.py as a module, its `code/` first on sys.path as the toolkit puts it."""
    code_dir = str(model_dir / "code")
    sys.path.insert(0, code_dir)
    spec = importlib.util.spec_from_file_location("inference", model_dir / HANDLER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lite_handler(hooks: ModuleType, model: Any) -> type[BaseHTTPRequestHandler]:
    """A request handler that answers /ping and /invocations through the hooks."""
    from multilabel.serving.request_codec import negotiate

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/ping":
                self._answer(200, "application/json", "{}")
            else:
                self._error(404, "NotFound", f"no such path {self.path}; use GET /ping or POST /invocations")

        def do_POST(self) -> None:
            if self.path != "/invocations":
                self._error(404, "NotFound", f"no such path {self.path}; use POST /invocations")
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                media = negotiate(self.headers.get("Accept"))
                request = hooks.input_fn(body, self.headers.get("Content-Type"))
                answer = hooks.output_fn(hooks.predict_fn(request, model), media)
            except ValueError as err:  # RequestError: the client's mistake, said in its message
                self._error(400, "BadRequest", str(err))
                return
            except Exception as err:
                logger.exception("prediction failed")
                self._error(500, "InternalServerException", type(err).__name__)
                return
            self._answer(200, media, answer)

        def _error(self, code: int, kind: str, message: str) -> None:
            self._answer(
                code, "application/json", json.dumps({"code": code, "type": kind, "message": message})
            )

        def _answer(self, code: int, media: str, text: str) -> None:
            payload = text.encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", media)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("%s " + format, self.address_string(), *args)  # counts only: no bodies

    return Handler


def make_lite_server(model_dir: Path, port: int) -> HTTPServer:
    """The standard-library server over `model_dir`'s hooks, bound to 127.0.0.1:`port` (0: any free port)."""
    hooks = load_hooks(model_dir)
    model = hooks.model_fn(str(model_dir))
    return HTTPServer(("127.0.0.1", port), lite_handler(hooks, model))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m multilabel.serve",
        description="Serve a model directory on 127.0.0.1 as the SageMaker endpoint does.",
        epilog="Exit status: 0 stopped with Ctrl-C; 2 not a model directory, or the server cannot start.",
    )
    parser.add_argument("model_dir", type=Path, help="the --model_dir that train.py wrote")
    parser.add_argument(
        "--port", type=int, default=8080, help="port for /ping and /invocations (default 8080)"
    )
    parser.add_argument(
        "--management-port",
        type=int,
        default=8081,
        help="Multi Model Server's management port (default 8081)",
    )
    parser.add_argument(
        "--lite", action="store_true", help="a standard-library server calling the hooks in-process (no Java)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from multilabel.serving.request_codec import DeploymentError

    try:
        check_model_dir(args.model_dir)
        if not args.lite:
            return serve_with_model_server(args.model_dir, args.port, args.management_port)
        server = make_lite_server(args.model_dir, args.port)
    except (ServeError, DeploymentError, OSError) as err:  # OSError: the port is taken
        logger.error("%s", err)
        return 2
    logger.info(
        "serving %s on http://127.0.0.1:%d (lite; Ctrl-C stops it)", args.model_dir, server.server_port
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
