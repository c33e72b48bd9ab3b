"""Input pipelines: sources (TFDS, embedded digits and emoji, synthetic), host-side transforms, Grain datasets, global arrays."""
