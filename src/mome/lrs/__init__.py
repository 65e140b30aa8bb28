"""LRS2/LRS3 preparation (`mome prepare-lrs`): face landmarks, the 96x96 mouth crop and the corpus writer."""
