"""Promptable segmenters behind one interface: SAM, MedSAM, SAM2 and LiteMedSAM.

``interface`` defines what every adapter offers (``encode`` a batch of slices once, ``decode``
many prompts of one slice from its embedding); ``encoding`` is the one batch-encoding loop;
``registry`` lists the checkpoints; ``settings.ModelSettings`` says where a site keeps the weights
and how models run (device, bf16, threads, encoder batch, input convention); ``checkpoints``
finds, verifies and loads weights files; ``zoo.load_model(name, settings)`` builds a model by name
and ``zoo.model_availability`` says which can run. No function here reads a profile:
``mskseg_lib.from_profile.models.model_settings`` unpacks one.
"""
