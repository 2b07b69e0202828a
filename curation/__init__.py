"""irgl-curation: build IRGL training data (six learning modes) for text-to-image models that reason in turns."""

__version__ = "0.1.0"
