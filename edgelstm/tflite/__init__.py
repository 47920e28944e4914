"""Ground level: the `.tflite` flatbuffer and the passes that edit it after conversion.

`passes` (state tying, cell-clip removal, explicit FULLY_CONNECTED biases) and `int16x8` (the
int8 -> int16x8 requantization of fused-LSTM sequence models) work on the official schema's object
API and import nothing above this layer; the reader is `edgelstm.tflite_info`.
"""
