"""Segmenting a CT: how a run goes (`settings`), the steps between a CT and the network (`preprocessing`), sliding
windows with Gaussian blending (`sliding_windows`), model-grid outputs back onto the input's grid (`resampling`), the
out-of-distribution guard (`plausibility`), `segment` and the `Segmenter` for many CTs (`segmenter`), and one case's
output files (`case_outputs`), a DICOM series' result also as a DICOM SEG with the model's codes (`dicom_seg`)."""
