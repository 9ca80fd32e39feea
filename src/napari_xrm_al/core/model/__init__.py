"""The network: the MONAI slice model, its checkpoints and intensity normalisation."""
