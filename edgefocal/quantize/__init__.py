"""Post-training INT8 quantization. The algorithm is NNCF's, once; backend differences live in small
modules (nncf_ptq for OpenVINO and ONNX Runtime, tensorrt_qdq for TensorRT's Q/DQ rules)."""
