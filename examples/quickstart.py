"""Add MAGMA to a ViT-MAE in a few lines: build it, train a step, save a plain transformers checkpoint with its
encoder in `encoder/`, and take features from there with transformers alone (the road the README recommends).

    python examples/quickstart.py
"""

import torch
from transformers import AutoModel, ViTMAEConfig

from hf_magma import ViTMAEWithMAGMA, run_unmasked, save_encoder

config = ViTMAEConfig(
    image_size=32, patch_size=4, hidden_size=96, num_hidden_layers=4, num_attention_heads=3, intermediate_size=384,
    decoder_hidden_size=64, decoder_num_hidden_layers=2, decoder_num_attention_heads=2, decoder_intermediate_size=256,
    magma_weight=1.0,  # lambda; block 2 is the reference layer and block 3 the regularised one by default
)
model = ViTMAEWithMAGMA(config)
optimizer = torch.optim.AdamW(model.parameters(), lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05)

pixel_values = torch.randn(64, 3, 32, 32)
outputs = model(pixel_values)
outputs.loss.backward()
optimizer.step()
print(
    f"loss {outputs.loss.item():.4f} = reconstruction {outputs.reconstruction_loss.item():.4f}"
    f" + {config.magma_weight} x magma {outputs.magma_loss.item():.4f}"
)

model.save_pretrained("outputs/quickstart")                    # the vit_mae checkpoint: continue pretraining here
save_encoder(model.config, model.state_dict(), "outputs/quickstart")  # outputs/quickstart/encoder: a plain ViTModel
# (MAGMATrainer writes encoder/ at every save by itself.)

encoder = AutoModel.from_pretrained("outputs/quickstart", subfolder="encoder")  # no hf_magma needed for this
with torch.no_grad():
    features = encoder(pixel_values=pixel_values[:4]).pooler_output         # (4, 96): the CLS features
    same = run_unmasked(model, pixel_values[:4]).last_hidden_state[:, 0]    # the model unmasked, tokens in order
print(f"{type(encoder).__name__} features {tuple(features.shape)}, equal to the model's own unmasked CLS: "
      f"{torch.allclose(features, same, atol=1e-5)}")
