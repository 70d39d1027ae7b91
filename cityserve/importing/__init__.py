"""Importers of official checkpoints: each turns an official file into cityserve weights + a model card."""
