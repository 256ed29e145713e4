"""The endpoint: requests and responses (`request_codec`), the loaded model (`classifier`),
its precision and runtime, ONNX, and `python -m multilabel.serve`. Never imports datasets,
scikit-learn, pandas or the SageMaker SDK.
"""
