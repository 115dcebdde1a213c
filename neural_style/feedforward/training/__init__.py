"""feedforward.training"""
