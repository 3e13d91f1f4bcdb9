"""asv benchmarks of reprogls: every kernel x size x device x mode, NumPy/BLAS baselines."""
