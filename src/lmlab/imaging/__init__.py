"""IDEAL: information-driven design of imaging systems (Pinkard et al., arXiv 2405.20559), in PyTorch.

An imaging system (the *encoder*: a PSF, a diffuser, a colour-filter array) is scored by the mutual information
between objects X and noisy measurements Y, estimated from measurements and a noise model alone::

    I(X; Y) = H(Y) - H(Y | X)

H(Y) is upper-bounded by the test negative log-likelihood of a density model fitted to measurements (full
Gaussian, stationary Gaussian process, PixelCNN); H(Y|X) follows from the noise model. IDEAL then maximises
the estimate over the encoder's parameters with Adam.

>>> import torch
>>> from lmlab.imaging import PSFEncoder, poisson_conditional_entropy
>>> enc = PSFEncoder(size=5, kind="delta")
>>> x = torch.full((2, 1, 8, 8), 100.0)
>>> y = enc(x)
>>> round(float(enc.psf().detach().sum()), 6), tuple(y.shape)   # 'valid' convolution: 8 - 5 + 1
(1.0, (2, 1, 4, 4))
>>> round(poisson_conditional_entropy(y.detach()), 3)   # 0.5 ln(2 pi e 100) per pixel
3.722

Submodules: ``encoders`` (differentiable optics), ``noise`` (noise models and H(Y|X)), ``density`` (H(Y) models,
bootstrap, the MI estimate), ``objects`` (bundled images, patches), ``optimize`` (IDEAL loop, end-to-end baseline).
"""

from lmlab.imaging.density import (FullGaussian, PixelCNN, PixelCNNConfig, StationaryGaussianProcess,
                                   bootstrap_mi, estimate_mi, gaussian_entropy, dequantize)
from lmlab.imaging.encoders import CFAEncoder, PSFEncoder, make_encoder
from lmlab.imaging.noise import (add_gaussian_noise, add_poisson_noise, gaussian_conditional_entropy,
                                 poisson_conditional_entropy_per_image,
                                 poisson_conditional_entropy)
from lmlab.imaging.objects import load_objects, random_patches

__all__ = ["CFAEncoder", "FullGaussian", "PSFEncoder", "PixelCNN", "PixelCNNConfig", "StationaryGaussianProcess",
           "add_gaussian_noise", "add_poisson_noise", "bootstrap_mi", "dequantize", "estimate_mi",
           "gaussian_conditional_entropy", "gaussian_entropy", "load_objects", "make_encoder",
           "poisson_conditional_entropy", "poisson_conditional_entropy_per_image", "random_patches"]
