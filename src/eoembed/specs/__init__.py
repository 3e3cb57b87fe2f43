"""Frozen, validated request values: where, when, what sensor, what output."""

from eoembed.specs._base import Spec, spec_from_dict
from eoembed.specs.output import OutputSpec
from eoembed.specs.sensor import SensorSpec
from eoembed.specs.spatial import BBox, GeometrySpec, PointBuffer, SpatialSpec, as_spatial
from eoembed.specs.temporal import TemporalSpec

__all__ = (
    "BBox",
    "GeometrySpec",
    "OutputSpec",
    "PointBuffer",
    "SensorSpec",
    "SpatialSpec",
    "Spec",
    "TemporalSpec",
    "as_spatial",
    "spec_from_dict",
)
