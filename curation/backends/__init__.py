"""Backends: one interface per role (source, teacher, image generator). Backends do I/O only."""
