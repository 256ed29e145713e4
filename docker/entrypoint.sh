#!/bin/sh
# SageMaker starts a bring-your-own container as `<image> train` or `<image> serve`.
set -e
case "$1" in
  train)
    # The SageMaker training toolkit: hyperparameters, channels and SM_* variables as on
    # SageMaker; it runs $SAGEMAKER_PROGRAM (train.py) from the submitted source, else /opt/ml/code.
    exec train
    ;;
  serve)
    # The Hugging Face inference toolkit in Multi Model Server on port 8080, with the
    # model's code/inference.py (copied there by train.py) as the handler.
    exec python -c "from sagemaker_huggingface_inference_toolkit import serving; serving.main()"
    ;;
  *)
    exec "$@"
    ;;
esac
