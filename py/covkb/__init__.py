"""covkb: policy 2024041 (idecabtagene vicleucel) as a clingo knowledge base."""

__version__ = "0.3.0"
