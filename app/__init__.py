"""MNIST Lab's web server: thin FastAPI routes over a run service that drives the engine."""
