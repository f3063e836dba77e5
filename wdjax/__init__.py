"""wdjax: weight decay and L1/L2 regularization for image recognition, in JAX."""
