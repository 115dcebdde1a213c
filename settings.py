"""Settings for `python train.py`: edit them here, or override any one with a flag of
the same name in lower case, e.g. `python train.py --content_image=me.jpg --beta=1000`.

Layer lists are (layer name, weight) pairs; on the command line they are written
`--style_loss_layers=relu1_1:0.2,relu2_1:0.2`. `python train.py --helpfull` lists every flag.
"""

# Photo whose content is kept (any PIL format); a folder or glob: each photo (or clip); a video.
CONTENT_IMAGE = "images/content.jpg"
# Photos of a folder or glob optimised together as one batch (Adam only; 1 = one at a time).
BATCH_SIZE = 2
# Artwork whose style is painted onto the photo; a list of paths blends several styles.
STYLE_IMAGE = "images/style.jpg"
# Output path prefix: snapshots <prefix>-<step>.jpg, the result <prefix>.jpg (or OUTPUT_FORMAT).
OUTPUT_IMAGE = "output/output"
# Format of snapshots and result: "jpg", "png", or 16 bits a channel: "png16" or "tiff16".
OUTPUT_FORMAT = "jpg"
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
# Style loss: "gram" (Gram matrices), "w2" (each layer's mean and covariance), "sw" (all of it).
STYLE_LOSS = "gram"
# Weight of the content loss (the paper's alpha).
ALPHA = 1.0
# Weight of the style loss (the paper's beta); larger means more stylised.
BETA = 500.0
# Weight of the total-variation loss, which smooths pixel noise (0 = off).
TV_WEIGHT = 0.0
# Starting image: "content", "style", "noise" or an image path; NOISE of noise is blended in.
INIT = "content"
# Fraction of uniform noise blended into the starting image (0 = none, 1 = pure noise).
NOISE = 0.5
# Optimiser: "adam" (steady, any size) or "lbfgs" (the paper's; fewer, costlier iterations).
OPTIMIZER = "adam"
# Adam's step size, in pixel values (0..255) per step.
LEARNING_RATE = 5.0
# Adam's decay rate of its first-moment (mean) estimate.
BETA1 = 0.9
# Adam's decay rate of its second-moment (variance) estimate.
BETA2 = 0.999
# Adam's epsilon; a large value such as 1.0 cures the grey speckles Adam can leave.
EPSILON = 1e-8
# Relative weights of the STYLE_IMAGE list (empty = equal); they are normalised to sum to 1.
STYLE_BLEND_WEIGHTS = []
# Size of the style image relative to the output (above 1 = bigger brush strokes).
STYLE_SCALE = 1.0
# Masks over the photo placing the styles, one per STYLE_IMAGE (white: here; "whole"; [] = none).
STYLE_MASKS = []
# Region of each style image whose style is taken, one mask per image ("whole": all of it).
STYLE_IMAGE_MASKS = []
# Weight map of the content loss: white keeps the photo there, black frees it ("" = none).
CONTENT_MASK = ""
# Keep the photo's colours: "off", "luminance" (restyle only brightness) or "histogram".
PRESERVE_COLORS = "off"
# Coarse-to-fine output widths, e.g. [256, 512] (empty = one stage at IMAGE_WIDTH).
COARSE_TO_FINE = []
# Steps at each coarse-to-fine stage (empty = TRAIN_STEPS at every stage).
COARSE_TO_FINE_STEPS = []
# Number of optimisation steps (L-BFGS: iterations); with RESUME, the total to reach.
TRAIN_STEPS = 250
# Write a snapshot every this many steps (0 = only the final image).
SNAPSHOT_EVERY = 50
# Print a progress line every this many steps.
PRINT_EVERY = 10
# Pooling between VGG blocks: "max" as trained, or "avg" (the paper prefers avg).
POOLING = "max"
# Conv arithmetic: auto (bfloat16 for Adam on bf16 CPUs), float32, mixed_bfloat16, mixed_float16.
PRECISION = "auto"
# Fraction of each stage's last steps run in float32 when PRECISION is mixed (0 = none).
FLOAT32_FINISH = 0.0
# Compute steps in tiles of this many pixels a side, same result (0 = above 4 Mpx or to fit).
TILE_SIZE = 0
# Random seed for the starting noise (the same settings and seed give the same image).
SEED = 0
# Continue the interrupted run whose checkpoint is <OUTPUT_IMAGE>-checkpoint.npz.
RESUME = False
# Let a new run replace the files of an earlier run with the same OUTPUT_IMAGE.
OVERWRITE = False

# --- Video (CONTENT_IMAGE a .mp4, .mov, .avi, .mkv, .webm or .m4v) ---

# Weight of a frame's loss for differing from the earlier results moved by the flow (0 = off).
TEMPORAL_WEIGHT = 10.0
# Share of TEMPORAL_WEIGHT on pixels moving over 1.5 px (1 = as still; 0 = restyled, with "sw").
TEMPORAL_MOVING_SHARE = 1.0
# Earlier frames a video frame is held to, in frames back; a pixel to the nearest the flow reaches.
TEMPORAL_FRAMES = [1, 2, 4]
# Optimisation steps of each frame after the first, which takes TRAIN_STEPS.
FRAME_STEPS = 50
# How a later frame starts: "warped" (the previous result moved by the flow) or "content".
FRAME_INIT = "warped"
# Frames of a video stylised, from its start (0 = every frame).
VIDEO_MAX_FRAMES = 0
# OpenCV DIS optical flow preset: "ultrafast", "fast" or "medium" (slower, more exact).
FLOW_PRESET = "medium"

# --- Cluster (python -m pip install -e '.[cluster]') ---

# "": this process; "ray": on RAY_ADDRESS's or a local Ray cluster (all three commands).
CLUSTER = ""

# --- Live view in the browser (python -m pip install -e '.[web]') ---

# Serve a live view of the run at a local URL, printed when the run starts (the web extra).
WEB = False
# Port of the live view (0 = any free port).
WEB_PORT = 8765
# Address the live view listens on; anything but 127.0.0.1 lets other machines connect.
WEB_HOST = "127.0.0.1"
# Seconds between two images sent to the live view, at least (the losses go at every step).
WEB_EVERY = 1.0

# --- Feed-forward network (train_network.py, stylize.py) ---
# `python train_network.py` trains a network for one style on a folder of photos (Johnson
# et al.); `python stylize.py` applies it to an image, a folder or a video in one pass.
# VGG_MODEL_PATH and POOLING above also choose the loss network's weights and pooling.

# Folder of training photos (JPEG, PNG; searched recursively), e.g. COCO's train2014.
NETWORK_DATASET = "images/photos"
# Artwork whose style the network learns.
NETWORK_STYLE_IMAGE = "images/style.jpg"
# Longer side of the style image when its Gram matrices are taken, pixels (0 = its own size).
NETWORK_STYLE_SIZE = 512
# Folder for the trained network, its settings, checkpoints, samples and losses log.
NETWORK_OUTPUT_DIR = "output/network"
# Side of the square crops the network trains on, pixels (at least 32).
NETWORK_IMAGE_SIZE = 256
# Training images per step over all GPUs and workers (the global batch; a multiple of their number).
NETWORK_BATCH_SIZE = 4
# Number of training steps (the paper: 40000 at batch 4, two passes over COCO).
NETWORK_STEPS = 40000
# Passes over the dataset; above 0 it sets the number of steps instead of NETWORK_STEPS.
NETWORK_EPOCHS = 0
# Adam's learning rate for the network's weights.
NETWORK_LEARNING_RATE = 0.001
# Channels of the network's first conv; the rest are 2x and 4x (the paper: 32).
NETWORK_WIDTH = 32
# Content layers of the loss network and their weights (the paper: relu2_2).
NETWORK_CONTENT_LAYERS = [("relu2_2", 1.0)]
# Style layers of the loss network and their weights (the paper: relu1_2 to relu4_3).
NETWORK_STYLE_LAYERS = [("relu1_2", 0.25), ("relu2_2", 0.25), ("relu3_3", 0.25), ("relu4_3", 0.25)]
# Weight of the content loss.
NETWORK_CONTENT_WEIGHT = 1.0
# Weight of the style loss; larger means more stylised.
NETWORK_STYLE_WEIGHT = 500.0
# Weight of the total-variation loss, which smooths the output (0 = off).
NETWORK_TV_WEIGHT = 0.001
# Save a checkpoint every this many steps, the last 3 kept (0 = only at the end).
NETWORK_CHECKPOINT_EVERY = 1000
# Stylise NETWORK_SAMPLE_IMAGE with the current network every this many steps (0 = at the end).
NETWORK_SAMPLE_EVERY = 500
# Photo stylised for the samples; best one that is not in the dataset.
NETWORK_SAMPLE_IMAGE = "images/content.jpg"
# Print a progress line every this many steps.
NETWORK_PRINT_EVERY = 10
# Continue training from NETWORK_OUTPUT_DIR's latest checkpoint (rate and steps may change).
NETWORK_RESUME = False
# Weight of the training loss against video flicker, in 0..255 pixel units like TV (0 = off).
NETWORK_TEMPORAL_WEIGHT = 100.0
# Random seed for the initial weights, the order of the photos and their crops.
NETWORK_SEED = 0
# Trained network (.keras) that stylize.py applies.
NETWORK_MODEL = "output/network/network.keras"
# What stylize.py stylises: an image, a folder of images, or a video (.mp4, .mov, ...).
STYLIZE_INPUT = "images/content.jpg"
# Folder stylize.py writes to, one output per input under the input's name.
STYLIZE_OUTPUT = "output/stylized"
# Images or video frames stylised together in one pass.
STYLIZE_BATCH_SIZE = 4
# Shrink inputs so their longer side is at most this, pixels (0 = keep each input's size).
STYLIZE_MAX_SIZE = 0
# Keep each input's colours and take only the brightness from the network's output.
STYLIZE_PRESERVE_COLORS = False
# The network's arithmetic: float32, mixed_bfloat16, auto (stylize.py: bfloat16 if the CPU has it).
NETWORK_PRECISION = "auto"
# Video: 0..1 of the previous output, moved by optical flow, blended into each frame (0 = off).
STYLIZE_VIDEO_BLEND = 0.0
# Let a new training run replace an earlier network in NETWORK_OUTPUT_DIR (else it is refused).
NETWORK_OVERWRITE = False
