"""edgelstm: Keras recurrent models to verified TFLite, TFLite Micro and plain C."""

__version__ = "0.1.0"
