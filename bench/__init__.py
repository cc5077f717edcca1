"""Benchmarks: speed (`mnist-lab bench`, in speed.py), accuracy, /predict load, streaming, soak.

Kept out of `engine/` because the speed benchmark compares against PyTorch when it is installed;
the engine itself never imports it.
"""
