"""Image data: the data arguments, loading (Hub datasets, image folders, the offline Fashion-MNIST), columns and
labels, decoding, MAE's transforms and crop, the in-memory path and SimCLR-style two views.

- `arguments`: `ImageDataArguments`;
- `loading`: `load_image_datasets`; `fashion_mnist`: `load_fashion_mnist`;
- `columns`: `find_image_column`, `find_label_column`, `resolve_columns`; `labels`: `class_count`, `sample_per_class`;
- `decoding`: `decode_image`; `transforms`: `ImageTransform`, `ImageCollator`; `crop`: `BatchImageTransform`;
- `in_memory`: `load_in_memory`, `InMemoryImageDataset` (uint8 batches augmented on the device);
- `two_views`: `TwoViewAugmentation`, `TwoViewCollator` (kornia: the `ssl` extra).
"""

from typing import TYPE_CHECKING

from ..utils.lazy import lazy_exports

_EXPORTS = {
    "arguments": ('ImageDataArguments',),
    "loading": ('load_image_datasets',),
    "fashion_mnist": ('load_fashion_mnist',),
    "columns": ('find_image_column', 'find_label_column', 'resolve_columns'),
    "labels": ('class_count', 'sample_per_class'),
    "decoding": ('decode_image',),
    "transforms": ('ImageCollator', 'ImageTransform'),
    "crop": ('BatchImageTransform',),
    "in_memory": ('InMemoryImageDataset', 'load_in_memory'),
    "two_views": ('TwoViewAugmentation', 'TwoViewCollator'),
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS, loaded=globals())

if TYPE_CHECKING:
    from .arguments import ImageDataArguments
    from .columns import find_image_column, find_label_column, resolve_columns
    from .crop import BatchImageTransform
    from .decoding import decode_image
    from .fashion_mnist import load_fashion_mnist
    from .in_memory import InMemoryImageDataset, load_in_memory
    from .labels import class_count, sample_per_class
    from .loading import load_image_datasets
    from .transforms import ImageCollator, ImageTransform
    from .two_views import TwoViewAugmentation, TwoViewCollator
