"""``bnc quantize``: a float PyTorch model → a low-bit ``bnc.nn`` model (DESIGN §3).

``capture`` reads the float model's ``torch.export`` program into a ``bnc.nn.Graph`` of float
layers; ``weights`` fits each layer's low-bit weights; ``model`` swaps the layers for their
``bnc.nn`` counterparts and calibrates the activation quantizers; ``api.quantize`` is
``bnc.quantize(...)`` and the command.
"""
