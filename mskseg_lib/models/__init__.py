"""Promptable segmenters behind one interface: SAM, MedSAM, SAM2 and LiteMedSAM.

``interface`` defines what every adapter offers (``encode`` a batch of slices once, ``decode``
many prompts of one slice from its embedding); ``registry`` lists the checkpoints;
``checkpoints`` finds, verifies and loads them; ``zoo.load_model`` builds a model by name.
"""
