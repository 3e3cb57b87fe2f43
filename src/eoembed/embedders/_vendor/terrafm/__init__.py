"""TerraFM (MBZUAI, Danish et al. 2025): vendored original model code.

``terrafm.py`` from the Hugging Face repo MBZUAI/TerraFM (Apache-2.0, LICENSE.terrafm),
vendored into eoembed from rs-embed 0.3.1 (PyPI) ``rs_embed/embedders/_vendor/terrafm.py``.
"""
