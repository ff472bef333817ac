"""rfw2s: exact weak-to-strong generalization in random feature networks.

Importing the package loads nothing heavy: ``python -m rfw2s`` sets BLAS threads
before NumPy is first imported. Use the submodules: :mod:`rfw2s.models`,
:mod:`rfw2s.solve`, :mod:`rfw2s.backend`.
"""
__version__ = "0.1.0"
