"""MNIST Lab's training engine: a multi-layer perceptron in plain NumPy.

NumPy only for the math, and nothing from `app/`: the server and the CLI use this same public API.
"""

__version__ = "0.1.0"
