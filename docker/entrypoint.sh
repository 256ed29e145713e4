#!/bin/sh
# SageMaker starts a bring-your-own container as `<image> train` or `<image> serve`.
set -e
case "$1" in
  train)
    # The SageMaker training toolkit: hyperparameters, channels and SM_* variables as on
    # SageMaker. It runs the submitted source when the job has one, else the image's copy.
    export SAGEMAKER_PROGRAM="${SAGEMAKER_PROGRAM:-train.py}"
    export SAGEMAKER_SUBMIT_DIRECTORY="${SAGEMAKER_SUBMIT_DIRECTORY:-/opt/ml/code}"
    exec train
    ;;
  serve)
    # The Hugging Face inference toolkit in Multi Model Server on port 8080, with the
    # model's code/inference.py (copied there by train.py) as the handler; the image's
    # own copy in the working directory serves a model directory without code/.
    unset SAGEMAKER_PROGRAM
    exec python -c "from sagemaker_huggingface_inference_toolkit import serving; serving.main()"
    ;;
  *)
    exec "$@"
    ;;
esac
