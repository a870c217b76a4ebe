"""What runs the network's windows: the compute device and precision (`device`; their names, without PyTorch,
`choices`), the protocol every backend offers
(`protocol`), PyTorch and the choice between backends (`selection`), OpenVINO with its per-model cache (`openvino`),
int8 quantization calibrated on the windows a segmentation feeds the network (`quantization`), OpenVINO's usage
telemetry kept off (`telemetry_off`), and the side-by-side speed benchmark of the networks and backends against
MONAI's AttentionUnet (`benchmark`)."""
