"""The paper's model: Yelp-format dataset, the 5-class CNN, training, export and the inference core.

Importing the package is cheap (no TensorFlow); heavy modules import it where they need it.
"""

LABELS = ("food", "drink", "menu", "inside", "outside")
DEFAULT_IMAGE_SIZE = 128
PAPER_ACCURACY = 0.79
PAPER_LOSS = 0.72
