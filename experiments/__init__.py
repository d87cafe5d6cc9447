"""The AMSGrad experiment suite: data, models, engines, training, grids, results, plots."""
