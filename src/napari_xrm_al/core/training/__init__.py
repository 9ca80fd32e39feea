"""Training the network: supervised training, contrastive pretraining, the labelled set, augmentation, losses, schedule, metrics."""
