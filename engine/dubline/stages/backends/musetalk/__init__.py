"""MuseTalk 1.5 from the official checkpoints: one UNet step in the latent space of sd-vae-ft-mse,
driven by whisper-tiny features of the dub.

- ``layout``: the model directory (which files, where), checked before anything loads;
- ``loading``: strict loading of the three models with diffusers / transformers, offline;
- ``audio``: whisper features of the dub and the per-frame windows the UNet attends to;
- ``faces``: the face box from 68 landmarks, the 256x256 crop, VAE input and output conventions;
- ``infer``: the batched core (crops + audio windows -> generated 256x256 faces);
- ``backend``: the ``musetalk`` render backend.

Only ``backend`` is imported by the pipeline (through the backends manifest); diffusers and
transformers are the optional extra ``dubline[musetalk]`` and are imported when models load.
See docs/MUSETALK.md.
"""
