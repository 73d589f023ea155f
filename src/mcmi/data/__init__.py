"""The data layer: readers for CIFAR pickles, ImageNet-style folders and npz archives, one
in-memory uint8 data set type, batched augmentation, and a reproducible, resumable loader.

>>> from mcmi.data import load_dataset, TensorLoader          # doctest: +SKIP
>>> train = load_dataset("cifar100", "train", root="~/data")    # doctest: +SKIP
>>> loader = TensorLoader(train, 128, shuffle=True, augment=True, seed=0)  # doctest: +SKIP
"""
from mcmi.data.augment import (
    CropFlipParams,
    ResizedCropParams,
    apply_crop_flip,
    apply_resized_crop,
    center_crop,
    normalize,
    random_crop_flip,
    random_resized_crop,
    sample_crop_flip,
    sample_resized_crop,
)
from mcmi.data.cifar import CIFAR10_CLASSES, CIFAR100_CLASSES, load_cifar10, load_cifar100
from mcmi.data.datasets import BUNDLED, DATASETS, dataset_stats, find_bundled, load_dataset
from mcmi.data.folder import LazyImageFolder, decode_image, load_image_folder
from mcmi.data.image_dataset import DataError, ImageDataset
from mcmi.data.loader import TensorLoader, derive_seed
from mcmi.data.npz import load_npz, save_npz
from mcmi.data.stats import DatasetStats, compute_stats
from mcmi.data.transforms import (
    Normalize,
    RandomCropFlip,
    RandomResizedCropFlip,
    Transform,
    default_augment,
)

__all__ = [
    "BUNDLED",
    "CIFAR10_CLASSES",
    "CIFAR100_CLASSES",
    "DATASETS",
    "CropFlipParams",
    "DataError",
    "DatasetStats",
    "ImageDataset",
    "LazyImageFolder",
    "Normalize",
    "RandomCropFlip",
    "RandomResizedCropFlip",
    "ResizedCropParams",
    "TensorLoader",
    "Transform",
    "apply_crop_flip",
    "apply_resized_crop",
    "center_crop",
    "compute_stats",
    "dataset_stats",
    "decode_image",
    "default_augment",
    "derive_seed",
    "find_bundled",
    "load_cifar10",
    "load_cifar100",
    "load_dataset",
    "load_image_folder",
    "load_npz",
    "normalize",
    "random_crop_flip",
    "random_resized_crop",
    "sample_crop_flip",
    "sample_resized_crop",
    "save_npz",
]
