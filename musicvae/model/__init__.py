"""The machine learning, free of Airflow and of the catalogue's tables: audio front ends (musicnn
ported to PyTorch, or log-mels) and their feature cache, TF-IDF lyrics, the hybrid beta-VAE and
its training loop, clustering, the evaluation harness and its plots.

May import `core` only.
"""
