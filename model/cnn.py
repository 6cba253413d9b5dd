"""The paper's CNN: 5 weight layers (3 convolutions + 2 dense), 5-way softmax.

At the default 128x128x3 input it has 2.84 M parameters and saves to ~11.4 MB without optimizer state,
the paper's "around 11 MB ... 5 layers".
"""

from __future__ import annotations

from model import DEFAULT_IMAGE_SIZE, LABELS


def build_cnn(image_size: int = DEFAULT_IMAGE_SIZE, num_classes: int = len(LABELS), dense_units: int = 224):
    import keras

    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=(image_size, image_size, 3), name="image"),
            layers.Rescaling(1.0 / 255),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(dense_units, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(num_classes, activation="softmax"),
        ],
        name="yelp_photo_cnn",
    )


def weight_layer_count(model) -> int:
    return sum(1 for layer in model.layers if layer.weights)
