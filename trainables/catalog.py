"""The names trainables offers (data sets, normalizations, corruptions, architectures), without
importing torch, so that validating a spec or listing presets stays fast."""

DATASETS = ("digits", "cifar10", "synthetic")
NORMALIZATIONS = ("dataset", "per_image")
KINDS = ("real", "randX", "randY", "gaussian", "shuffled_pixels", "random_pixels")
# LASS defaults (Arpit et al. 2017; science.md Sec. 2), in [0, 1] pixel units: step alpha,
# noise beta, L-inf box radius r, and the iteration cap.
LASS_ALPHA, LASS_BETA, LASS_R, LASS_ITERS = 0.25 / 255, 0.2 / 255, 30 / 255, 20
ARCHS = ("mlp1", "mlp3", "alexnet", "inception", "inception_nobn", "wrn", "cnn")
