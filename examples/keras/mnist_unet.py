"""Keras 3's side of wgcnn's mnist-unet: the same denoising U-Net and recipe, for the
test loss and PSNR beside wgcnn's (README, "The experiments").

    KERAS_BACKEND=jax python3 examples/keras/mnist_unet.py ../shared/datasets/mnist [epochs] [seed]

Input: the image plus Gaussian noise (sigma 0.3, clipped to [0, 1]); target: the clean
image. Binary cross-entropy, Adam 1e-3, batch 32, shuffled every epoch; then the test
loss, binary accuracy and PSNR (the mean over images of 10*log10(1/MSE)).
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
    conv = lambda f: layers.Conv2D(f, 3, padding="same", activation="relu")
    inputs = keras.Input((28, 28, 1))
    c1 = conv(16)(inputs)
    c2 = conv(32)(layers.MaxPooling2D(2)(c1))
    c3 = conv(64)(layers.MaxPooling2D(2)(c2))
    u2 = layers.Conv2DTranspose(32, 2, strides=2, padding="same")(c3)
    c4 = conv(32)(layers.Concatenate()([u2, c2]))
    u1 = layers.UpSampling2D(2)(c4)
    c5 = conv(16)(layers.Concatenate()([u1, c1]))
    outputs = layers.Conv2D(1, 1, activation="sigmoid")(c5)
    return keras.Model(inputs, outputs)


def psnr(pred, clean):
    mse = ((pred - clean) ** 2).reshape(len(clean), -1).mean(axis=1)
    return float(np.mean(10 * np.log10(1 / np.maximum(mse, 1e-12))))


def main():
    root = sys.argv[1]
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x = idx(f"{root}/train-images-idx3-ubyte.gz").astype("float32")[..., None] / 255.0
    xt = idx(f"{root}/t10k-images-idx3-ubyte.gz").astype("float32")[..., None] / 255.0
    noisy = lambda a: np.clip(a + 0.3 * rng.standard_normal(a.shape).astype("float32"), 0, 1)
    xn, xtn = noisy(x), noisy(xt)
    m = model()
    m.summary()
    m.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy",
              metrics=["binary_accuracy"])
    start = time.time()
    m.fit(xn, x, epochs=epochs, batch_size=32, verbose=2)
    seconds = time.time() - start
    loss, acc = m.evaluate(xtn, xt, batch_size=32, verbose=0)
    pred = m.predict(xtn, batch_size=32, verbose=0)
    print(f"keras mnist-unet: {m.count_params()} parameters, {epochs} epoch(s), {seconds:.0f} s; "
          f"test loss {loss:.4f}, binary accuracy {acc:.4f}, PSNR {psnr(pred, xt):.2f} dB "
          f"(noisy input {psnr(xtn, xt):.2f} dB)")


if __name__ == "__main__":
    main()
