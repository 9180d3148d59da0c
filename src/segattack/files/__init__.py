"""The project's file formats: safetensors with JSON metadata (weights, perturbations)."""
