"""Evaluation: metrics (`metrics`), case matching (`matching`), scoring folders or cases (`scoring`), the
report and its files (`report`, `tables`), paired comparison of two reports (`comparison`) and scoring a
model on a dataset (`models`)."""
