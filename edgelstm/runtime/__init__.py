"""The runtime side: load and run .tflite models without TensorFlow."""
