"""Triton Inference Server: model-repository generation and checks, and a local server helper.

``finsight triton build`` writes a repository that serves raw text (tokenizer, ONNX
classifier, postprocess, ensemble); ``finsight triton check`` runs it in a real tritonserver
and compares it with the local ONNX predictor. The triton backend of the predictor
(``finsight.predict.triton_backend``) is the client.
"""
