"""edgefocal: a trained FocalNet in, verified INT8 edge artifacts out."""

__version__ = "0.1.0"
