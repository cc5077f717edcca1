"""What a digit is, for every part of MNIST Lab: a 28x28 grey image, so 784 inputs to the network,
showing one of 10 classes (the digits 0..9)."""

IMAGE_SIDE = 28
N_INPUTS = IMAGE_SIDE * IMAGE_SIDE
N_CLASSES = 10
TRAIN_SAMPLES = 60_000  # digits in MNIST's training set
TEST_SAMPLES = 10_000  # and in its test set
