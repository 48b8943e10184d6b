"""ups: a 1D Burgers PDE surrogate trained in three stages."""
