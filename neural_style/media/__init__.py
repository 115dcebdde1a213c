"""What goes in and out as files, with no TensorFlow: images (any mode, EXIF and ICC
colour handled), colour transfer, 16-bit encoders, loss plots, video through ffmpeg, and
the optical flow between frames.

    images.py, color_profiles.py, colors.py   load, resize, save; sRGB; colour transfer
    plots.py                                  the loss plot, drawn in a child process
    video_io.py, video_write.py, flow.py      video in, video out, DIS optical flow
"""
