"""`python -m multilabel.artifact pack MODEL_DIR model.tar.gz` / `check model.tar.gz`.

The code lives in `multilabel/core/artifact.py`.
"""

from multilabel.core.artifact import main

if __name__ == "__main__":
    raise SystemExit(main())
