"""musicvae: keeps a MERGE music catalogue clustered with a multimodal beta-VAE."""

__version__ = "0.1.0"
