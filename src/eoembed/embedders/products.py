"""The published embedding products eoembed serves, one card each (values read, not computed)."""

from __future__ import annotations

from eoembed.bands import embedding_bands
from eoembed.embedders.card import ModelCard, ProductInfo
from eoembed.embedders.published import PublishedEmbedder, product_card

__all__ = ["AlphaEarth", "CopernicusEmbed", "MajorTomS1RTCSSL4EO", "MajorTomS2L1CSSL4EO",
           "MajorTomS2RGBDINOv2", "MajorTomS2RGBSigLIP", "Tessera"]


class AlphaEarth(PublishedEmbedder):
    """Google's Satellite Embedding V1 (AlphaEarth Foundations), annual, 64-d, 10 m."""

    card = product_card(
        id="alphaearth",
        family="published",
        summary="AlphaEarth Foundations annual embeddings (Google Satellite Embedding V1): "
        "64-d unit vectors per 10 m pixel, read from the public COG mirror or Earth Engine.",
        collection="alphaearth-annual",
        bands=embedding_bands("A", 64, 10.0),
        gsd_m=10.0,
        product=ProductInfo(
            name="Google Satellite Embedding V1 (AlphaEarth Foundations), annual",
            years=(2017, 2024),
            coverage="global land and shallow water; the COG mirror holds 2018-2024 (2017 "
            "withheld), Earth Engine 2017 onwards",
            grid="local UTM zone per 8192 x 8192 px tile, 10 m pixels on multiples of 10 m; "
            "mirror files stored bottom-up",
            quantisation="int8 in the COGs: value = sign(x) * (x / 127.5)^2, -128 = no data "
            "(Earth Engine serves the floats)",
            providers=("alphaearth", "earthengine"),
            url="https://source.coop/tge-labs/aef",
        ),
        licence="CC-BY-4.0 (The AlphaEarth Foundations Satellite Embedding dataset is produced "
        "by Google and Google DeepMind.)",
        citation="Brown, C. F. et al. AlphaEarth Foundations: An embedding field model for "
        "accurate and efficient global mapping from sparse label data. arXiv:2507.22291 (2025).",
    )


class Tessera(PublishedEmbedder):
    """TESSERA annual embeddings (geotessera), 128-d, 10 m."""

    card = product_card(
        id="tessera",
        family="published",
        summary="TESSERA annual pixel embeddings from Sentinel-1/2 time series: 128-d per "
        "10 m pixel, 0.1 degree tiles in their UTM zone, read through geotessera.",
        collection="tessera-annual",
        bands=embedding_bands("T", 128, 10.0, width=3),
        gsd_m=10.0,
        product=ProductInfo(
            name="TESSERA pixel embeddings (geotessera), annual",
            years=(2017, 2024),
            coverage="land tiles listed in the geotessera registry (years vary by place)",
            grid="0.1 x 0.1 degree tiles centred at 0.05 degree offsets, each in the UTM zone "
            "of its landmask GeoTIFF, 10 m pixels",
            quantisation="int8 per tile with float32 scales: value = code x scale (geotessera's "
            "dequantize_embedding); no data where the landmask is 0 (water) or a scale is not "
            "in (0, 1)",
            providers=("tessera",),
            url="https://github.com/ucam-eo/geotessera",
        ),
        licence="embeddings: see the TESSERA project (not stated in geotessera 0.7.5); "
        "geotessera: MIT",
        citation="Feng, Z. et al. TESSERA: Temporal Embeddings of Surface Spectra for Earth "
        "Representation and Analysis. arXiv:2506.20380 (2025).",
    )


class CopernicusEmbed(PublishedEmbedder):
    """Copernicus-Embed-025deg: Copernicus-FM embeddings of all Copernicus sensors, 0.25 deg."""

    card = product_card(
        id="copernicus-embed",
        family="published",
        summary="Copernicus-Embed-025deg: one static global map of 768-d Copernicus-FM "
        "embeddings (Sentinel-1/2/3/5P and DEM fused) on a 0.25 degree grid; read at 1 km.",
        collection="copernicus-embed-025deg",
        bands=embedding_bands("E", 768, 1000.0, width=3),
        gsd_m=1000.0,
        product=ProductInfo(
            name="Copernicus-Embed-025deg (Copernicus-FM grid embeddings)",
            years=None,
            coverage="global land cells of Copernicus-Pretrain (310k cells); oceans empty",
            grid="EPSG:4326, 1440 x 721 cells of 0.25 degree, centres on the lattice from "
            "180 W, 90 N; read at 1 km by nearest (pooled: each cell weighed by its area)",
            quantisation="float32 (TorchGeo's GeoTIFF of the published npz); all-zero "
            "vectors are no data",
            providers=("copernicus-embed",),
            url="https://huggingface.co/datasets/torchgeo/copernicus_embed",
        ),
        licence="CC-BY-4.0 (dataset); Apache-2.0 (code)",
        citation="Wang, Y. et al. Towards a Unified Copernicus Foundation Model for Earth "
        "Vision. arXiv:2503.11849 (2025).",
    )


def _majortom_card(model_id: str, collection: str) -> ModelCard:
    """The card of one Major TOM embedding set (see :mod:`eoembed.providers.majortom`)."""
    from eoembed.providers.majortom import GSD_M, MAJORTOM_SETS

    dataset = MAJORTOM_SETS[collection]
    return product_card(
        id=model_id,
        family="published",
        summary=f"Major TOM {dataset.model} embeddings of {dataset.source}: {dataset.dim}-d "
        f"per {dataset.fragment_px} px fragment of each 10 km Major TOM cell, one image each.",
        collection=collection,
        bands=dataset.bands,
        gsd_m=GSD_M,
        product=ProductInfo(
            name=f"Major TOM {dataset.repo_id.split('/')[1]} embeddings",
            years=None,
            coverage="Major TOM Core: one image per 10 km grid cell of the land (2017-2023); "
            "the window selects fragments by their image's acquisition time",
            grid=f"fragments of {dataset.fragment_px} px at 10 m (~10% overlap) of each Major "
            f"TOM cell, lon/lat footprints; painted at {GSD_M:g} m, nearest fragment centre",
            quantisation=f"float32, {dataset.dim}-d; no data outside every fragment",
            providers=("majortom",),
            url=f"https://huggingface.co/datasets/{dataset.repo_id}",
        ),
        licence="CC-BY-SA-4.0",
        citation="Czerkawski, M., Kluczek, M., Bojanowski, J. S. Global and Dense Embeddings of "
        "Earth: Major TOM Floating in the Latent Space. arXiv:2412.05600 (2024); Francis, A., "
        "Czerkawski, M. Major TOM: Expandable Datasets for Earth Observation. IGARSS 2024.",
    )


class MajorTomS2L1CSSL4EO(PublishedEmbedder):
    """Major TOM Core-S2L1C-SSL4EO: SSL4EO ResNet-50 on 13-band Sentinel-2 L1C, 2048-d."""

    card = _majortom_card("majortom-s2l1c-ssl4eo", "majortom-core-s2l1c-ssl4eo")


class MajorTomS1RTCSSL4EO(PublishedEmbedder):
    """Major TOM Core-S1RTC-SSL4EO: SSL4EO ResNet-50 on Sentinel-1 RTC, 2048-d."""

    card = _majortom_card("majortom-s1rtc-ssl4eo", "majortom-core-s1rtc-ssl4eo")


class MajorTomS2RGBDINOv2(PublishedEmbedder):
    """Major TOM Core-S2RGB-DINOv2: DINOv2 ViT-B on Sentinel-2 RGB, 768-d."""

    card = _majortom_card("majortom-s2rgb-dinov2", "majortom-core-s2rgb-dinov2")


class MajorTomS2RGBSigLIP(PublishedEmbedder):
    """Major TOM Core-S2RGB-SigLIP: SigLIP SO400M on Sentinel-2 RGB, 1152-d."""

    card = _majortom_card("majortom-s2rgb-siglip", "majortom-core-s2rgb-siglip")
