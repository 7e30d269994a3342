import pytest
from transformers import ViTImageProcessor

from hf_magma.model_config import load_image_processor


def test_load_image_processor_reads_the_checkpoint_and_follows_the_image_size(tmp_path):
    ViTImageProcessor(image_mean=[0.1] * 3, image_std=[0.2] * 3, size={"height": 64, "width": 64}).save_pretrained(
        tmp_path
    )
    processor = load_image_processor(tmp_path, 16)
    assert list(processor.image_mean) == [0.1] * 3 and list(processor.image_std) == [0.2] * 3
    assert processor.size == {"height": 16, "width": 16}
    assert load_image_processor(tmp_path).size == {"height": 64, "width": 64}


def test_load_image_processor_falls_back_to_vit_defaults_unless_required(tmp_path):
    processor = load_image_processor(tmp_path, 32)
    defaults = ViTImageProcessor()
    assert processor.image_mean == defaults.image_mean and processor.image_std == defaults.image_std
    assert processor.size == {"height": 32, "width": 32}
    assert load_image_processor(None, 8).size == {"height": 8, "width": 8}
    with pytest.raises(ValueError, match="no image processor"):
        load_image_processor(tmp_path, 32, required=True)
