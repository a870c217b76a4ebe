"""Where cases come from, for training and evaluation alike.

Modules, one job each: cases (finding a dataset's image/label pairs), label_maps (source label values ->
model classes), segment_names (label maps from segment names matched to a model's classes), splits (k-fold
cross-validation), grids (whether two images cover the same voxels).
"""
