"""The names trainables offers (data sets, normalizations, corruptions, architectures), without
importing torch, so that validating a spec or listing presets stays fast."""

DATASETS = ("digits", "cifar10", "synthetic")
NORMALIZATIONS = ("dataset", "per_image")
KINDS = ("real", "randX", "randY", "gaussian", "shuffled_pixels", "random_pixels")
ARCHS = ("mlp1", "mlp3", "alexnet", "inception", "inception_nobn", "wrn", "cnn")
