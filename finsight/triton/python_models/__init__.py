"""The ``model.py`` files of the python-backend models that ``finsight triton build`` copies into
a repository. They run inside tritonserver's Python stub (numpy<2, onnxruntime, tokenizers),
never in finsight's own process: nothing in finsight imports them.
"""
