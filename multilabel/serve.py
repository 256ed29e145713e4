"""`python -m multilabel.serve MODEL_DIR --port 8080 [--lite]`.

The code lives in `multilabel/serving/serve.py`.
"""

from multilabel.serving.serve import main

if __name__ == "__main__":
    raise SystemExit(main())
