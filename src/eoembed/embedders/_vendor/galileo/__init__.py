"""Galileo encoder (nasaharvest/galileo ``single_file_galileo.py``, MIT), vendored from rs-embed 0.3.1."""
