"""Pure loss functions, one file per method; the methods in :mod:`mcmi.methods` weight and combine them."""
from mcmi.losses.cmi import kl_to_centroids
from mcmi.losses.kd import kd_loss, soft_target_cross_entropy

__all__ = ["kd_loss", "kl_to_centroids", "soft_target_cross_entropy"]
