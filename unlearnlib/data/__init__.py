"""Datasets (torchvision loaders, local copies first), batch loaders and forget/retain/test splits."""

from .datasets import DATASETS, DatasetNotAvailableError, DatasetSpec, ImageData, load_dataset
from .loaders import Loader, augment, normalise
from .splits import Split, Trigger, backdoor_split, class_split, poison, random_split, save_splits, stratified_subset

__all__ = [
    "DATASETS", "DatasetNotAvailableError", "DatasetSpec", "ImageData", "load_dataset", "Loader", "augment",
    "normalise", "Split", "Trigger", "backdoor_split", "class_split", "poison", "random_split", "save_splits",
    "stratified_subset",
]
