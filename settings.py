"""Settings for `python train.py`: edit them here, or override any one with a flag of
the same name in lower case, e.g. `python train.py --content_image=me.jpg --beta=1000`.

Layer lists are (layer name, weight) pairs; on the command line they are written
`--style_loss_layers=relu1_1:0.2,relu2_1:0.2`. `python train.py --helpfull` lists every flag.
"""

# Photo whose content is kept (any format PIL reads).
CONTENT_IMAGE = "images/content.jpg"
# Artwork whose style is painted onto the photo; resized to the output size.
STYLE_IMAGE = "images/style.jpg"
# Output path prefix: snapshots are <prefix>-<step>.jpg, the result <prefix>.jpg.
OUTPUT_IMAGE = "output/output"
# MatConvNet VGG-19 weights (.mat); if this default is missing, a synthetic stand-in is used.
VGG_MODEL_PATH = "weights/imagenet-vgg-verydeep-19.mat"
# Output width in pixels (0 = the content image's own width).
IMAGE_WIDTH = 512
# Output height in pixels (0 = keep the content image's aspect ratio).
IMAGE_HEIGHT = 0
# Content layers and their weights: the paper's conv4_2 means its rectified output.
CONTENT_LOSS_LAYERS = [("relu4_2", 0.5), ("relu5_2", 0.5)]
# Style layers and their weights (Gram matrices are matched at each).
STYLE_LOSS_LAYERS = [
    ("relu1_1", 0.2),
    ("relu2_1", 0.2),
    ("relu3_1", 0.2),
    ("relu4_1", 0.2),
    ("relu5_1", 0.2),
]
# Weight of the content loss (the paper's alpha).
ALPHA = 1.0
# Weight of the style loss (the paper's beta); larger means more stylised.
BETA = 500.0
# Weight of the total-variation loss, which smooths pixel noise (0 = off).
TV_WEIGHT = 0.0
# Fraction of uniform noise blended into the content image to start (0 = content, 1 = noise).
NOISE = 0.5
# Adam's step size, in pixel values (0..255) per step.
LEARNING_RATE = 5.0
# Number of optimisation steps.
TRAIN_STEPS = 250
# Write a snapshot every this many steps (0 = only the final image).
SNAPSHOT_EVERY = 50
# Print a progress line every this many steps.
PRINT_EVERY = 10
# Pooling between VGG blocks: "max" as trained, or "avg" (the paper prefers avg).
POOLING = "max"
# Random seed for the starting noise (the same seed gives the same start).
SEED = 0
