"""Side-by-side benchmarks: torchopt_lite vs torch.optim, TorchOpt 0.7.3 and higher."""
