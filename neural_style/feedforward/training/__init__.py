"""Training the network (python train_network.py), in the order data flows:

    run_inputs.py, run_files.py, run_folder.py   what a run reads, the names of its
                   files, its output folder (lock, earlier runs, resume checks)
    data.py        the tf.data pipeline over a folder of photos, skipping bad files
    loss.py, temporal.py   the perceptual loss; the loss against flicker
    trainer.py     the distribution strategy and the distributed step
    session.py     the loop; saving.py, writers.py: checkpoints and the network; logs
    run.py         train_network(): the pieces above, tied together

Each module's own docstring says more.
"""
