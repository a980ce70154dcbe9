"""Wav2Lip-compatible generator that loads the official ``wav2lip.pth`` / ``wav2lip_gan.pth``.

- ``model``: the generator architecture; ``syncnet``: the expert discriminator and sync measures;
- ``checkpoint``: strict loading of the official files (and the conformance kit's deterministic weights);
- ``infer``: the batched inference core (96x96 RGB crops + mel windows -> 96x96 RGB mouths).
"""
