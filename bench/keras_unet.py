"""The original's Keras U-Net (Lee & Bajic 2021, Model 1), for the A/B benchmark only.

Runs under a bench-only Python with TensorFlow (e.g. ``/work/tfbench/bin/python``); TensorFlow is
never a dependency of the package. The model is the original's: Conv2D 3x3 same + ReLU (two per
level), MaxPooling2D 2x2, Conv2DTranspose 2x2 stride 2 (no activation), concatenate
[upsampled, skip], a 1x1 Conv2D + sigmoid output; widths 16, 32, 64, 128, 256; Keras's default
Glorot-uniform kernels and zero biases; SGD lr 1e-3, binary cross-entropy; NHWC float32.
At ``width=16`` it has 1,941,105 parameters, like ``infoflow.models.build_model(model=1)``.
"""

from __future__ import annotations


def build_keras_unet(size: int = 128, width: int = 16, lr: float = 1e-3):
    import keras
    from keras import layers

    def two_conv(x, ch):
        x = layers.Conv2D(ch, 3, padding="same", activation="relu")(x)
        return layers.Conv2D(ch, 3, padding="same", activation="relu")(x)

    w = width
    inputs = keras.Input((size, size, 3))
    c1 = two_conv(inputs, w)
    c2 = two_conv(layers.MaxPooling2D(2)(c1), 2 * w)
    c3 = two_conv(layers.MaxPooling2D(2)(c2), 4 * w)
    c4 = two_conv(layers.MaxPooling2D(2)(c3), 8 * w)
    c5 = two_conv(layers.MaxPooling2D(2)(c4), 16 * w)
    x = c5
    for skip, ch in ((c4, 8 * w), (c3, 4 * w), (c2, 2 * w), (c1, w)):
        up = layers.Conv2DTranspose(ch, 2, strides=2, padding="same")(x)
        x = two_conv(layers.concatenate([up, skip]), ch)
    outputs = layers.Conv2D(1, 1, activation="sigmoid")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="binary_crossentropy")
    return model
