"""Exporters: ONNX graphs + manifest (``onnx``, ``graphs``) and the ``export`` CLI (``cli``)."""
