"""The recipes `python train.py --preset NAME` starts from: plain dicts of config fields.

Each preset names the fields it changes from the defaults, which are the default recipe
(`VAEConfig` in model.py, `TrainConfig` in training.py); "model" picks the model class and
"routing" the routing (routing.ROUTINGS). train.py applies a preset, then the flags given.
`python -m bench` reads its models from here too. docs/experiments.md says how each was chosen.
"""

PRESETS = {
    # ELU decoder without hidden biases, BCE loss, 0.5 x KL, 25 epochs: the dataclass defaults.
    "default": {},
    # 8 style dims that reach the decoder only through [z_d, vec(z_d outer z_s)] (docs/style.md),
    # their KL weighted 1 and the digit dims' 0.25, both KL weights climbing over 5 epochs, an L1
    # penalty on the digit code, and Adam 2e-3 on a cosine schedule after one epoch of warm-up,
    # 27 epochs.
    "style": dict(style=8, style_kl_weight=1.0, kl_weight=0.25, kl_warmup=5, l1_weight=1.0,
                  epochs=27, lr=2e-3, lr_schedule="cosine", warmup=1),
    # The reference post's recipe: 784-2048-512-10, ReLU everywhere, 0.3 * SSE + its KL-like
    # term mean_k(mu^2 + exp(logvar) - logvar), which is 0.2 * KL + 1 for K = 10, 100 epochs.
    "reference": dict(enc_hidden=(2048, 512), dec_hidden=(512, 2048), dec_act="relu",
                      dec_hidden_bias=True, recon="sse", recon_weight=0.3, kl_weight=0.2,
                      epochs=100),
    # The Gradient Routing paper's MNIST experiment (docs/halves.md): a deterministic
    # autoencoder, the code's halves routed from digits 0-4 and 5-9, two certificate decoders;
    # MAE, L1 3e-3 per half, correlation penalty 0.1, Adam 1e-3 with the paper's coupled (L2)
    # weight decay 5e-5, constant lr. Scaled down: 784-512-256-32, batch 64, 16 epochs.
    "halves": dict(model="autoencoder", routing="halves", enc_hidden=(512, 256),
                   dec_hidden=(256, 512), batch_size=64, epochs=16, lr_decay=1.0,
                   weight_decay=5e-5, weight_decay_form="coupled"),
    # The paper's sizes: 784-2048-512-32, batch 2048, 200 epochs (hours on 2 cores).
    "halves-paper": dict(model="autoencoder", routing="halves", enc_hidden=(2048, 512),
                         dec_hidden=(512, 2048), batch_size=2048, epochs=200, lr_decay=1.0,
                         weight_decay=5e-5, weight_decay_form="coupled"),
}
