"""Insight into training and into trained models: weight dynamics, filters, feature maps, Grad-CAM, CKA, loss
landscape."""
