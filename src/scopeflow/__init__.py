"""scopeflow: parallel microscopy pipelines on Dask, from a laptop to an HPC cluster."""

__version__ = "0.1.0"

__all__ = ["__version__"]
