"""Training: the shared loop machinery (``runner``), losses, SPADE's discriminator, and the SPADE,
pix2pix and segmenter trainers the ``train/`` entry points drive."""
