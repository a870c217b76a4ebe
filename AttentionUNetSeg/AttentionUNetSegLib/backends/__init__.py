"""What runs the network's windows: the protocol every backend offers (`protocol`), PyTorch and the choice between
backends (`selection`), OpenVINO with its per-model cache (`openvino`), int8 quantization (`quantization`), and
OpenVINO's usage telemetry kept off (`telemetry_off`)."""
