"""On-device operations on batches, inside the jitted step (jax.numpy and dm-pix only): image normalisation
(`image`), photometric augmentation (`augment`), and fine-tuning's mixup, CutMix, random erasing and label smoothing
(`regularization`)."""
