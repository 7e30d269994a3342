import pytest
from transformers import ViTImageProcessor

from hf_magma.models.arguments import load_image_processor
from tests.helpers.tiny import tiny_overrides


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


TINY_OVERRIDES = tiny_overrides(decoder=False, num_hidden_layers=3)


def test_both_loaders_apply_overrides_and_magma_layers(tmp_path):
    from hf_magma.models.arguments import (
        MAGMAModelArguments,
        SSLModelArguments,
        load_model_and_image_processor,
        load_ssl_model_and_image_processor,
    )

    layers = {"magma_reference_layers": "0,1", "magma_target_layer": 2}
    mae, processor = load_model_and_image_processor(
        MAGMAModelArguments(config_overrides=TINY_OVERRIDES + ",decoder_hidden_size=32", mask_ratio=0.5, **layers)
    )
    ssl, _ = load_ssl_model_and_image_processor(
        SSLModelArguments(config_overrides=TINY_OVERRIDES, objective="vicreg", projector_hidden_size=16, **layers)
    )
    for model in (mae, ssl):
        assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 3
        assert model.config.magma_reference_layers == [0, 1] and model.config.magma_target_layer == 2
    assert mae.config.mask_ratio == 0.5 and processor.size == {"height": 16, "width": 16}
    assert ssl.config.ssl_objective == "vicreg" and ssl.config.projector_hidden_size == 16

    mae.config.save_pretrained(tmp_path / "mae")
    ssl.config.save_pretrained(tmp_path / "vit")
    with pytest.raises(ValueError, match="MAGMA pretraining needs a ViT-MAE config"):
        load_model_and_image_processor(MAGMAModelArguments(config_name=str(tmp_path / "vit")))
    with pytest.raises(ValueError, match="SimCLR/VICReg pretraining needs a ViT config"):
        load_ssl_model_and_image_processor(SSLModelArguments(config_name=str(tmp_path / "mae")))


@pytest.mark.parametrize("setting", ["mask_ratio=0.9", "norm_pix_loss=false"])
def test_config_overrides_cannot_set_what_its_own_option_sets(setting):
    from hf_magma.models.arguments import MAGMAModelArguments, load_model_and_image_processor

    key = setting.split("=")[0]
    with pytest.raises(ValueError, match=f"--config_overrides sets {key}, .* pass --{key} instead"):
        MAGMAModelArguments(config_overrides=tiny_overrides() + "," + setting)
    model, _ = load_model_and_image_processor(
        MAGMAModelArguments(config_overrides=tiny_overrides(), mask_ratio=0.5, norm_pix_loss=False)
    )
    assert model.config.mask_ratio == 0.5 and model.config.norm_pix_loss is False
