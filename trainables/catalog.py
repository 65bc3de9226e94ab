"""The names trainables offers (data sets, normalizations, corruptions, architectures), without
importing torch, so that validating a spec or listing presets stays fast."""

DATASETS = ("digits", "cifar10", "synthetic")
NORMALIZATIONS = ("dataset", "per_image")
KINDS = ("real", "randX", "randY", "gaussian", "shuffled_pixels", "random_pixels")
# LASS defaults (Arpit et al. 2017, Sec. 4 and Fig. 9), in [0, 1] pixel units: step alpha,
# noise beta, L-inf box radius r, and the iteration cap.
LASS_ALPHA, LASS_BETA, LASS_R, LASS_ITERS = 0.25 / 255, 0.2 / 255, 30 / 255, 20
# Each architecture with its default SGD learning rate (Zhang et al. 2017: 0.01 for the MLPs and
# the small AlexNet, 0.1 for Inception and WideResNet; Arpit et al. 2017's CNN: 0.01). The spec's
# `optimizer.lr_by_arch` is built from this table, so an architecture cannot lack a default.
# inception_nobn: 0.01, because without batch norm SGD at 0.1 diverges to NaN within 60 steps on
# a digits batch (measured, He-initialized), while 0.01 fits it.
DEFAULT_LR = {"mlp1": 0.01, "mlp3": 0.01, "alexnet": 0.01, "inception": 0.1, "inception_nobn": 0.01,
              "wrn": 0.1, "cnn": 0.01}
ARCHS = tuple(DEFAULT_LR)
