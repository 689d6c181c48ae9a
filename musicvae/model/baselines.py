"""The representations the hybrid VAE is compared with: direct spectral statistics, their PCA,
and the research code's plain autoencoder."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler
from torch import nn


def spectral_features(mels: np.ndarray, chunk: int = 256) -> np.ndarray:
    """[N, n_mels, T] -> [N, 2*n_mels] float32: per-band mean over time, then per-band std."""
    mels = np.asarray(mels)
    if mels.ndim != 3:
        raise ValueError(f"expected [N, n_mels, T] log-mels, got shape {mels.shape}")
    n, n_mels, _ = mels.shape
    out = np.empty((n, 2 * n_mels), dtype=np.float32)
    # float16 catalogues are large; widen (for exact sums) one chunk at a time.
    for start in range(0, n, chunk):
        block = mels[start : start + chunk].astype(np.float64)
        out[start : start + chunk, :n_mels] = block.mean(axis=2)
        out[start : start + chunk, n_mels:] = block.std(axis=2)
    return out


def standardise(x: np.ndarray) -> np.ndarray:
    """Each column to zero mean and unit variance, as PCA's input is, float32."""
    return StandardScaler().fit_transform(np.asarray(x, dtype=np.float64)).astype(np.float32)


def pca(x: np.ndarray, n_components: int, seed: int) -> np.ndarray:
    """Standardised `x` projected on its first principal components, [N, n_components] float32
    (fewer when `x` has fewer rows or columns)."""
    z = StandardScaler().fit_transform(np.asarray(x, dtype=np.float64))
    k = max(1, min(n_components, *z.shape))
    return PCA(n_components=k, random_state=seed).fit_transform(z).astype(np.float32)


class _AutoEncoder(nn.Module):
    def __init__(self, n_features: int, latent_dim: int, hidden: int = 256):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, latent_dim)
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, n_features)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def plain_autoencoder(x: np.ndarray, latent_dim: int, seed: int, epochs: int = 50) -> np.ndarray:
    """The research baseline: a deterministic MLP autoencoder (MSE, Adam 1e-3, batch 32) on the
    standardised features; returns the latent codes [N, latent_dim] float32."""
    z = StandardScaler().fit_transform(np.asarray(x, dtype=np.float64)).astype(np.float32)
    data = torch.from_numpy(z)
    threads = torch.get_num_threads()
    # fork_rng: seeding for reproducible weights must not reset the caller's torch RNG stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _AutoEncoder(z.shape[1], latent_dim)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        try:
            # Batches of 32 x a few hundred features are too small to split across threads:
            # on a shared 2-core machine one thread runs about twice as fast.
            torch.set_num_threads(1)
            _fit_autoencoder(model, opt, data, epochs, np.random.default_rng(seed))
        finally:
            torch.set_num_threads(threads)
        model.eval()
        with torch.inference_mode():
            return model.encoder(data).numpy().astype(np.float32)


def _fit_autoencoder(model, opt, data: torch.Tensor, epochs: int, rng) -> None:
    model.train()
    for _ in range(epochs):
        shuffled = data[torch.from_numpy(rng.permutation(len(data)))]  # batches become views
        for start in range(0, len(shuffled), 32):
            batch = shuffled[start : start + 32]
            loss = nn.functional.mse_loss(model(batch), batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
