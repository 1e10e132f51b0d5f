"""Keras 3's side of wgcnn's mnist-mobile: the same network and recipe, for the accuracy
and parameter counts beside wgcnn's (README, "The experiments").

    KERAS_BACKEND=jax python3 examples/keras/mnist_mobile.py ../shared/datasets/mnist [epochs] [seed]

Adam with its learning rate on a cosine from 1e-3 to 0 over the run (5 epochs by
default), batch 32, images scaled to [0, 1], shuffled every epoch, no augmentation, then
the test accuracy on the 10,000 test images.
"""
import gzip
import sys
import time

import numpy as np
import keras
from keras import layers


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def model():
    relu6 = lambda: layers.ReLU(max_value=6.0)
    inputs = keras.Input((28, 28, 1))
    x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(inputs)
    x = relu6()(layers.BatchNormalization()(x))
    e = layers.Conv2D(64, 1, use_bias=False)(x)
    e = relu6()(layers.BatchNormalization()(e))
    e = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(e)
    e = relu6()(layers.BatchNormalization()(e))
    e = layers.Conv2D(16, 1, use_bias=False)(e)
    e = layers.BatchNormalization()(e)
    x = layers.Add()([x, e])
    x = layers.SeparableConv2D(32, 3, strides=2, padding="same")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def main():
    root = sys.argv[1]
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    keras.utils.set_random_seed(seed)
    x = idx(f"{root}/train-images-idx3-ubyte.gz").astype("float32")[..., None] / 255.0
    y = idx(f"{root}/train-labels-idx1-ubyte.gz").astype("int32")
    xt = idx(f"{root}/t10k-images-idx3-ubyte.gz").astype("float32")[..., None] / 255.0
    yt = idx(f"{root}/t10k-labels-idx1-ubyte.gz").astype("int32")
    m = model()
    m.summary()
    m.compile(
        optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(1e-3, decay_steps=epochs * 1875)
        ),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    t = time.time()
    m.fit(x, y, batch_size=32, epochs=epochs, shuffle=True, verbose=2)
    loss, acc = m.evaluate(xt, yt, batch_size=256, verbose=0)
    print(f"test loss {loss:.4f} accuracy {acc:.4f} ({time.time() - t:.0f} s)")


if __name__ == "__main__":
    main()
