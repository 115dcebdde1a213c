"""feedforward.stylizing"""
