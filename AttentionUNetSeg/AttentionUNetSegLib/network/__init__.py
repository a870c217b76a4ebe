"""The network: the 3D Attention U-Net of Oktay et al. 2018 and its U-Net baseline (`attention_unet`), BatchNorm
folding for inference (`batchnorm_folding`) and the authors' released checkpoints (`authors_checkpoints`)."""
