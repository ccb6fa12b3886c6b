"""Importable only through the layer directory localrt puts on PYTHONPATH."""
