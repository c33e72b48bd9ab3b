"""Flax Linen architectures. They know nothing of methods, data or training; parameters carry logical axis names."""
