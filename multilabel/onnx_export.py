"""`python -m multilabel.onnx_export MODEL_DIR [--pack model.tar.gz]`.

The code lives in `multilabel/serving/onnx_export.py`.
"""

from multilabel.serving.onnx_export import main

if __name__ == "__main__":
    raise SystemExit(main())
