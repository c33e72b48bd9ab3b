"""Input pipelines: sources (TFDS, embedded digits, synthetic), host-side transforms, Grain datasets, global arrays."""
