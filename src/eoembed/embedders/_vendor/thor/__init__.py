"""THOR v1 (FM4CS, Norwegian Computing Center): vendored original model code.

``thor_vit``, ``patch_embed``, ``pos_embed``: FM4CS/THOR v1.0.2 (MIT, LICENSE.thor);
``terratorch_ext``: FM4CS/thor_terratorch_ext @ fdbc4c4345adfbdbc41ed5b497a05b56eeec96af
(Apache-2.0, LICENSE.thor_terratorch_ext). Vendored into eoembed from rs-embed 0.3.1 (PyPI)
``rs_embed/embedders/_vendor/thor/`` and ``_vendor/thor_vit.py``; each file names its changes.
"""
