"""A trained model on one clip: reading and checking the clip (`clip`, `inputs`), decoding it at chosen rates or
a budget (`api`, behind `mome.load`), and the local web page (`serve`)."""
